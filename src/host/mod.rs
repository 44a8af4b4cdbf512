//! The Rhai host: compiles playbooks (with their imported modules, all at once, so a broken
//! module is a compile error and never half a run), runs them with `ARGS` and `OPTS`, and hands
//! natives the [`Context`] they work in.
//!
//! Scripts run on a blocking thread; natives that need async core code go through
//! [`Context::block_on`].

pub mod engine;
pub mod error;
pub mod modules;
pub mod natives;
mod services;
pub mod watch;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use indexmap::IndexMap;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, Scope, AST};

use crate::config::{self, Loaded};
use crate::fleet::Fleet;
use crate::project::{Project, Source};
use crate::report::Reporter;

use crate::state::store::{StateStore, StoreError};
pub use error::{ErrorKind, ScriptError};
use modules::StdlibResolver;
pub use services::{Lazy, Services};

/// How a run was asked for.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub dry_run: bool,
    pub json: bool,
    /// `plan --offline`: no cloud call, the recorded state taken as it is.
    pub offline: bool,
    /// The command line as the lock holder and the audit log record it: the subcommand and
    /// playbook, never option values (they may be secrets).
    pub command: String,
    pub lock_timeout: Duration,
}

/// What natives share during a run.
pub struct Context {
    pub project: Project,
    pub options: RunOptions,
    pub cancel: Arc<AtomicBool>,
    pub services: Services,
    /// When the run began, for the timings a run reports.
    pub started: std::time::Instant,
}

impl Context {
    pub fn new(project: Project, options: RunOptions, cancel: Arc<AtomicBool>) -> Self {
        let services = Services::new(&project, &options);
        Context {
            project,
            options,
            cancel,
            services,
            started: std::time::Instant::now(),
        }
    }

    /// The cloud: DigitalOcean with `DO_TOKEN`, else the project's sandbox. Made on first use,
    /// so playbooks that never touch the cloud need no token.
    pub fn fleet(&self) -> Result<Arc<Fleet>, Box<EvalAltResult>> {
        self.services.fleet.get_or_try_init(|| {
            Fleet::for_project(&self.project, self.cancel.clone())
                .map_err(|e| error::located(e.to_string(), true))
        })
    }

    /// SSH to the droplets: one pooled connection per host, host keys pinned.
    pub fn ssh_pool(&self) -> Result<Arc<crate::remote::Pool>, Box<EvalAltResult>> {
        self.services.ssh.get_or_try_init(|| {
            crate::remote::Connector::for_project(&self.project)
                .map(crate::remote::Pool::new)
                .map_err(|e| error::located(e.to_string(), false))
        })
    }

    /// The fleet if this run made one (without making one).
    pub fn fleet_if_used(&self) -> Option<Arc<Fleet>> {
        self.services.fleet.get()
    }

    /// How every change and progress line is told.
    pub fn reporter(&self) -> &Reporter {
        &self.services.reporter
    }

    /// Runs async core code from a native (natives run on a blocking thread of the runtime).
    pub fn block_on<F: std::future::Future>(
        &self,
        future: F,
    ) -> Result<F::Output, Box<EvalAltResult>> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            error::failure(
                "this native needs infra's async runtime, which this host was not started in",
            )
        })?;
        Ok(handle.block_on(future))
    }

    /// Starts async core code in the background (natives run on a blocking thread).
    pub fn spawn<F>(
        &self,
        future: F,
    ) -> Result<tokio::task::JoinHandle<F::Output>, Box<EvalAltResult>>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            error::failure(
                "this native needs infra's async runtime, which this host was not started in",
            )
        })?;
        Ok(handle.spawn(future))
    }

    pub fn dry_run(&self) -> bool {
        self.options.dry_run
    }

    /// The state store, opened on first use.
    pub fn store(&self) -> Result<StoreGuard<'_>, Box<EvalAltResult>> {
        let mut guard = self.services.store.lock().expect("state store");
        if guard.is_none() {
            let path = self.project.state_path();
            let store = StateStore::open(
                &path,
                &self.project.display(&path),
                &self.project.lock_path(),
                &self.options.command,
                self.options.lock_timeout,
                self.options.dry_run,
            )
            .map_err(store_error)?;
            *guard = Some(store);
        }
        Ok(StoreGuard(guard))
    }

    /// Every config file read and checked against the current state.
    pub fn loaded(&self) -> Result<Loaded, Box<EvalAltResult>> {
        let state = self.store()?.shared();
        config::load(&self.project, state).map_err(|e| error::invalid(&e))
    }

    /// Lets go of the lock and drops the store, so the next run reads the file afresh.
    pub fn reset(&self) {
        self.services.reset_run();
        if let Some(mut store) = self.services.store.lock().expect("state store").take() {
            store.release();
            crate::deferred_drop::drop_in_background(store);
        }
    }
}

pub struct StoreGuard<'a>(MutexGuard<'a, Option<StateStore>>);

impl std::ops::Deref for StoreGuard<'_> {
    type Target = StateStore;
    fn deref(&self) -> &StateStore {
        self.0.as_ref().expect("opened")
    }
}

impl std::ops::DerefMut for StoreGuard<'_> {
    fn deref_mut(&mut self) -> &mut StateStore {
        self.0.as_mut().expect("opened")
    }
}

/// Maps a state store error to a script error: bad input unless the disk or the lock failed.
pub fn store_error(e: StoreError) -> Box<EvalAltResult> {
    match e {
        StoreError::Invalid(problems) => error::invalid(&problems),
        StoreError::State(_) => error::bad_input(e.to_string()),
        StoreError::Lock(_) | StoreError::Write { .. } => error::located(e.to_string(), false),
    }
}

/// A compiled playbook, ready to run (possibly many times).
#[derive(Clone)]
pub struct Compiled {
    pub ast: AST,
    pub display: String,
}

pub struct Host {
    engine: Engine,
    pub ctx: Arc<Context>,
    loaded: Arc<Mutex<modules::Loaded>>,
}

impl Host {
    pub fn new(ctx: Arc<Context>) -> Host {
        let mut engine = engine::hardened(ctx.cancel.clone());
        let loaded = Arc::new(Mutex::new(modules::Loaded::default()));
        engine.set_module_resolver(StdlibResolver::new(ctx.project.clone(), loaded.clone()));
        natives::register_all(&mut engine, &ctx);
        Host {
            engine,
            ctx,
            loaded,
        }
    }

    /// Rhai definitions of every native (with its documentation) for editors: what `infra
    /// init` writes to definitions/infra.d.rhai.
    pub fn definitions(&self) -> String {
        let text = self
            .engine
            .definitions()
            .include_standard_packages(false)
            .single_file();
        format!(
            "// infra's natives, for editors that read Rhai definitions (written by `infra init`).\n{}",
            natives::docs::annotate(&text)
        )
    }

    /// The names of the natives registered in the engine (overloads once).
    #[cfg(test)]
    pub fn native_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .engine
            .gen_fn_signatures(false)
            .iter()
            .filter_map(|sig| sig.split('(').next().map(str::to_string))
            .filter(|name| !name.starts_with("get$") && !name.starts_with("set$"))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// `ARGS` and `OPTS`. They are constants when running, but plain variables when compiling,
    /// or the optimizer would fold the compile-time (empty) values into the script.
    fn scope(args: &[String], opts: &IndexMap<String, Dynamic>, constant: bool) -> Scope<'static> {
        let mut scope = Scope::new();
        let args: Array = args.iter().map(|a| Dynamic::from(a.clone())).collect();
        let mut map = Map::new();
        for (k, v) in opts {
            map.insert(k.as_str().into(), v.clone());
        }
        if constant {
            scope.push_constant("ARGS", args);
            scope.push_constant("OPTS", map);
        } else {
            scope.push("ARGS", args);
            scope.push("OPTS", map);
        }
        scope
    }

    /// Source texts seen so far (playbooks and modules), for error rendering.
    fn sources(&self) -> HashMap<String, String> {
        self.loaded.lock().expect("module list").sources.clone()
    }

    /// Module files the last compile used, with their names.
    pub fn modules(&self) -> Vec<(String, Option<std::path::PathBuf>)> {
        self.loaded.lock().expect("module list").modules.clone()
    }

    /// Compiles a playbook and every module it imports.
    pub fn compile(&self, source: &Source) -> Result<Compiled, ScriptError> {
        {
            let mut loaded = self.loaded.lock().expect("module list");
            loaded.modules.clear();
            loaded
                .sources
                .insert(source.display.clone(), source.text.clone());
        }
        let scope = Self::scope(&[], &IndexMap::new(), false);
        match self
            .engine
            .compile_into_self_contained(&scope, &source.text)
        {
            Ok(mut ast) => {
                ast.set_source(source.display.as_str());
                Ok(Compiled {
                    ast,
                    display: source.display.clone(),
                })
            }
            Err(e) => {
                let mut err = ScriptError::from_rhai(&e, &source.display, &self.sources());
                if err.kind != ErrorKind::Cancelled {
                    err.kind = ErrorKind::Compile;
                }
                Err(err)
            }
        }
    }

    /// Runs a compiled playbook.
    pub fn run(
        &self,
        compiled: &Compiled,
        args: &[String],
        opts: &IndexMap<String, Dynamic>,
    ) -> Result<(), ScriptError> {
        let mut scope = Self::scope(args, opts, true);
        let result = self.engine.run_ast_with_scope(&mut scope, &compiled.ast);
        // Whatever happened, let go of the lock and drop the cached state.
        self.ctx.reset();
        result.map_err(|e| ScriptError::from_rhai(&e, &compiled.display, &self.sources()))
    }

    /// Calls the function `name` of a compiled playbook with `args`, without running the
    /// playbook's top level: how the monitors run recovery.rhai's steps.
    pub fn call(
        &self,
        compiled: &Compiled,
        name: &str,
        args: Vec<Dynamic>,
    ) -> Result<Dynamic, ScriptError> {
        let mut scope = Self::scope(&[], &IndexMap::new(), true);
        let options = rhai::CallFnOptions::new().eval_ast(false);
        let result = self.engine.call_fn_with_options::<Dynamic>(
            options,
            &mut scope,
            &compiled.ast,
            name,
            args,
        );
        self.ctx.reset();
        result.map_err(|e| ScriptError::from_rhai(&e, &compiled.display, &self.sources()))
    }

    pub fn run_source(
        &self,
        source: &Source,
        args: &[String],
        opts: &IndexMap<String, Dynamic>,
    ) -> Result<(), ScriptError> {
        let compiled = self.compile(source)?;
        self.run(&compiled, args, opts)
    }
}
