//! `import "name" as x;` resolves `stdlib/name.rhai`: the project's file if there is one, else
//! the embedded default. Every module loaded is remembered (its text for error messages, its
//! path for `--watch`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

use crate::project::{Project, SourceError};

#[derive(Default)]
pub struct Loaded {
    /// Source display name -> text, for rendering errors.
    pub sources: HashMap<String, String>,
    /// Module names imported, and the file on disk each came from (if any).
    pub modules: Vec<(String, Option<PathBuf>)>,
}

#[derive(Clone)]
pub struct StdlibResolver {
    project: Project,
    pub loaded: Arc<Mutex<Loaded>>,
}

impl StdlibResolver {
    pub fn new(project: Project, loaded: Arc<Mutex<Loaded>>) -> Self {
        StdlibResolver { project, loaded }
    }
}

fn module_name(path: &str) -> Option<&str> {
    let name = path.strip_suffix(".rhai").unwrap_or(path);
    let name = name.strip_prefix("stdlib/").unwrap_or(name);
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    valid.then_some(name)
}

impl ModuleResolver for StdlibResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let not_found = || Box::new(EvalAltResult::ErrorModuleNotFound(path.to_string(), pos));
        let name = module_name(path).ok_or_else(not_found)?;
        let source = match self.project.source(&format!("stdlib/{name}.rhai")) {
            Ok(source) => source,
            Err(SourceError::NotFound) => return Err(not_found()),
            // There is a file, so "not found" would send the user looking in the wrong place.
            Err(e) => return Err(super::error::located(format!("module `{name}`: {e}"), true)),
        };
        {
            let mut loaded = self.loaded.lock().expect("module list");
            loaded
                .sources
                .insert(source.display.clone(), source.text.clone());
            loaded.modules.push((name.to_string(), source.path.clone()));
        }
        let in_module = |err: Box<EvalAltResult>| {
            Box::new(EvalAltResult::ErrorInModule(
                source.display.clone(),
                err,
                pos,
            ))
        };
        let mut ast = engine
            .compile(&source.text)
            .map_err(|e| in_module(Box::new(e.into())))?;
        ast.set_source(source.display.as_str());
        let mut module = Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(in_module)?;
        module.set_id(source.display.as_str());
        module.build_index();
        Ok(module.into())
    }
}
