//! `infra validate`: every config file and the state, every problem listed.

use serde::Serialize;
use serde_json::json;

use super::{Env, Failure, Outcome};
use crate::config::load_with_problems;
use crate::diagnostic::{Location, Problem};
use crate::state::State;

#[derive(Serialize)]
struct ProblemJson<'a> {
    file: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<usize>,
    message: &'a str,
}

fn problem_json(p: &Problem) -> ProblemJson<'_> {
    let (path, line, column) = match &p.location {
        Location::File => (None, None, None),
        Location::Path(path) => (Some(path.as_str()), None, None),
        Location::LineColumn(l, c) => (None, Some(*l), Some(*c)),
    };
    ProblemJson {
        file: &p.file,
        path,
        line,
        column,
        message: &p.message,
    }
}

pub async fn run(env: &Env) -> Outcome {
    let project = &env.project;
    let path = project.state_path();
    let display = project.display(&path);
    let (problems, summary) = match State::load(&path, &display) {
        Err(problem) => {
            // Without the state, the other files can still be checked on their own.
            let (_, mut problems, _) =
                load_with_problems(project, State::empty(&path, &display), true);
            let mut all = crate::diagnostic::Problems::new();
            all.push(problem);
            all.extend(std::mem::take(&mut problems));
            (all, None)
        }
        Ok(state) => {
            let (loaded, mut problems, files) = load_with_problems(project, state, true);
            let catalog = crate::fleet::catalog_for_validation(project).await;
            problems.extend(crate::config::check_catalog(&loaded, &catalog));
            let services: usize = loaded.services.values().map(|s| s.len()).sum();
            let summary = json!({
                "files": files,
                "projects": loaded.spec.projects.len(),
                "spec_droplets": crate::state::placement::required_droplets(&loaded.spec).len(),
                "services": services,
            });
            (problems, Some(summary))
        }
    };
    if env.options.json {
        let list: Vec<ProblemJson> = problems.iter().map(problem_json).collect();
        println!(
            "{}",
            json!({"valid": problems.is_empty(), "problems": list, "summary": summary})
        );
    } else {
        for p in problems.iter() {
            eprintln!("error: {p}");
        }
        if problems.is_empty() {
            if let Some(s) = &summary {
                let present: Vec<&str> = s["files"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|f| f["present"].as_bool() == Some(true))
                    .filter_map(|f| f["file"].as_str())
                    .collect();
                println!(
                    "valid: {} ({} projects, {} droplets and {} services in the spec)",
                    present.join(", "),
                    s["projects"],
                    s["spec_droplets"],
                    s["services"]
                );
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let n = problems.len();
        Err(Failure::input(format!(
            "found {n} problem{}",
            if n == 1 { "" } else { "s" }
        )))
    }
}
