//! One module per subcommand; `dispatch` maps the command line onto them and every failure
//! onto an exit code (0 ok, 1 the flow failed, 2 bad input, 130 interrupted).

mod discover;
mod exec;
mod init;
mod monitor;
mod notify;
mod playbook;
mod recover;
mod releases;
mod render;
mod sandbox;
mod status;
mod validate;
mod watch;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

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

/// The command line as the lock holder and the audit log record it: `infra`, the flags and
/// the subcommand with its arguments, but for `run` only the playbook (its ARGS and the OPTS
/// after `--` may carry secrets), and never anything after `--`.
fn command_line(args: impl IntoIterator<Item = String>) -> String {
    let mut line = vec!["infra".to_string()];
    let mut run = false;
    for arg in args {
        if arg == "--" {
            break;
        }
        if run && !arg.starts_with('-') {
            line.push(arg);
            break;
        }
        run = run || arg == "run";
        line.push(arg);
    }
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
    if cli.global.offline && !cli.global.dry_run && !matches!(cli.command, Command::Plan { .. }) {
        return Err(Failure::input(
            "--offline goes with `plan` or `--dry-run`: a change to the cloud needs the cloud",
        ));
    }
    let env = Env {
        project: Project::new(Path::new(&cwd), &cli.global.config_dir),
        options: RunOptions {
            dry_run: cli.global.dry_run,
            json: cli.global.json,
            offline: cli.global.offline,
            command: command_line(std::env::args().skip(1)),
            lock_timeout: Duration::from_secs(cli.global.lock_timeout),
        },
        cancel,
    };
    match cli.command {
        Command::Init { force } => init::run(&env, force),
        Command::Validate => validate::run(&env).await,
        Command::Status { refresh } => status::run(&env, refresh).await,
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
                playbook::flags(&[("force", force), ("plan_only", true)]),
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
        Command::Monitor { droplet, listen } => monitor::run(&env, &droplet, listen).await,
        Command::InstallMonitors { droplets } => monitor::install(&env, &droplets).await,
        Command::DeployUat {
            project,
            branch,
            local,
            project_path,
            batch,
            force,
        } => {
            let mut opts = playbook::flags(&[("local", local), ("force", force)]);
            if let Some(branch) = branch {
                opts.insert("branch".into(), branch.into());
            }
            if let Some(path) = project_path {
                opts.insert("project_path".into(), path.into());
            }
            opts.insert("batch".into(), (batch as i64).into());
            playbook::builtin(env, "deploy_uat", vec![project], opts).await
        }
        Command::DeployProd {
            project,
            batch,
            force,
        } => {
            let mut opts = playbook::flags(&[("force", force)]);
            opts.insert("batch".into(), (batch as i64).into());
            playbook::builtin(env, "deploy_prod", vec![project], opts).await
        }
        Command::Rollback {
            project,
            environment,
            release,
            batch,
        } => {
            let mut args = vec![project, environment];
            args.extend(release);
            let mut opts = IndexMap::new();
            opts.insert("batch".into(), (batch as i64).into());
            playbook::builtin(env, "rollback", args, opts).await
        }
        Command::Recover { droplet, yes } => recover::run(env, droplet, yes).await,
        Command::Releases {
            project,
            environment,
        } => releases::run(&env, &project, &environment),
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
        Command::Exec {
            target,
            parallel,
            command,
        } => exec::run(&env, &target, parallel, &command.join(" ")).await,
        Command::Notify { action } => notify::run(&env, action).await,
        Command::Run {
            file,
            args,
            watch,
            opts,
        } => playbook::run(env, file, args, watch, opts).await,
    }
}

#[cfg(test)]
mod tests {
    use super::command_line;

    fn line(args: &[&str]) -> String {
        command_line(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn the_recorded_command_line_leaves_out_what_may_be_secret() {
        assert_eq!(
            line(&["orchestrate", "--force"]),
            "infra orchestrate --force"
        );
        assert_eq!(line(&["scale", "shop", "3"]), "infra scale shop 3");
        assert_eq!(
            line(&[
                "--json",
                "run",
                "flow.rhai",
                "s3cret",
                "--",
                "--password",
                "hunter2"
            ]),
            "infra --json run flow.rhai"
        );
        assert_eq!(
            line(&["run", "--watch", "flow.rhai", "--", "--token", "x"]),
            "infra run --watch flow.rhai"
        );
    }
}
