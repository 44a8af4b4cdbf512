//! One module per subcommand; `dispatch` maps the command line onto them and every failure
//! onto an exit code (0 ok, 1 the flow failed, 2 bad input, 130 interrupted).

mod discover;
mod init;
mod playbook;
mod render;
mod sandbox;
mod status;
mod validate;
mod watch;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{Cli, Command};
use crate::diagnostic::InvalidInput;
use crate::host::{RunOptions, ScriptError};
use crate::project::Project;

/// A command's failure, with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn input(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    /// Stopped by Ctrl-C; nothing more to say.
    pub fn interrupted() -> Self {
        Failure {
            code: 130,
            message: String::new(),
        }
    }

    pub fn flow(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<InvalidInput> for Failure {
    fn from(e: InvalidInput) -> Self {
        // One `error:` line per problem (main prefixes the first).
        let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        Failure::input(lines.join("\nerror: "))
    }
}

impl From<crate::diagnostic::Problem> for Failure {
    fn from(p: crate::diagnostic::Problem) -> Self {
        Failure::input(p.to_string())
    }
}

impl From<ScriptError> for Failure {
    fn from(e: ScriptError) -> Self {
        Failure {
            code: e.kind.exit_code(),
            message: e.to_string(),
        }
    }
}

pub type Outcome = Result<(), Failure>;

/// What every command gets: where the project is and how it was asked to run.
pub struct Env {
    pub project: Project,
    pub options: RunOptions,
    pub cancel: Arc<AtomicBool>,
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().collect();
    let mut line = vec!["infra".to_string()];
    line.extend(args.into_iter().skip(1));
    line.join(" ")
}

pub async fn dispatch(cli: Cli) -> Outcome {
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::flow(format!("cannot read the current directory: {e}")))?;
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!("interrupted: stopping at the next safe point (Ctrl-C again to force)");
            flag.store(true, Ordering::SeqCst);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let env = Env {
        project: Project::new(Path::new(&cwd), &cli.global.config_dir),
        options: RunOptions {
            dry_run: cli.global.dry_run,
            json: cli.global.json,
            command: command_line(),
            lock_timeout: Duration::from_secs(cli.global.lock_timeout),
        },
        cancel,
    };
    match cli.command {
        Command::Init { force } => init::run(&env, force),
        Command::Validate => validate::run(&env).await,
        Command::Status => status::run(&env),
        Command::Discover {
            project,
            environment,
        } => discover::run(&env, &project, &environment),
        Command::Plan { force } => {
            let mut env = env;
            env.options.dry_run = true;
            playbook::builtin(
                env,
                "orchestrate",
                vec![],
                playbook::flags(&[("force", force)]),
            )
            .await
        }
        Command::Orchestrate { force, yes } => {
            playbook::builtin(
                env,
                "orchestrate",
                vec![],
                playbook::flags(&[("force", force), ("yes", yes)]),
            )
            .await
        }
        Command::AddProject {
            name,
            environments,
            web_droplets,
            size,
        } => {
            playbook::builtin(
                env,
                "add_project",
                vec![name, environments, web_droplets, size],
                Default::default(),
            )
            .await
        }
        Command::Scale {
            project,
            web_droplets,
        } => {
            playbook::builtin(
                env,
                "scale",
                vec![project, web_droplets],
                Default::default(),
            )
            .await
        }
        Command::RemoveProject { name } => {
            playbook::builtin(env, "remove_project", vec![name], Default::default()).await
        }
        Command::Cleanup { apply } => {
            playbook::builtin(env, "cleanup", vec![], playbook::flags(&[("apply", apply)])).await
        }
        Command::UpdateAdminIp { cidr } => {
            playbook::builtin(env, "update_admin_ip", vec![cidr], Default::default()).await
        }
        Command::Watch => watch::run(env).await,
        Command::Render {
            template,
            project,
            environment,
            service,
            release,
            droplet,
            set,
            show_context,
        } => render::run(
            &env,
            render::RenderArgs {
                template,
                request: crate::template::Request {
                    project,
                    environment,
                    service,
                    release: Some(release),
                    droplet,
                },
                set,
                show_context,
            },
        ),
        Command::Sandbox { action } => sandbox::run(&env, action).await,
        Command::Run {
            file,
            args,
            watch,
            opts,
        } => playbook::run(env, file, args, watch, opts).await,
    }
}
