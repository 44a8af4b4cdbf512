//! The command line: global flags and one subcommand per flow.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "infra",
    version,
    about = "Personal-cloud orchestrator: droplets from a JSON spec, containers, nginx and self-healing, driven by Rhai playbooks",
    after_help = "Every flow is a playbook in playbooks/ (run `infra init` to get editable copies).\nExit codes: 0 ok, 1 the flow failed, 2 bad input (usage, config, playbook syntax)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Directory holding infrastructure.json and the other config files.
    #[arg(long, global = true, default_value = "config", value_name = "DIR")]
    pub config_dir: PathBuf,
    /// Show what would change without changing anything.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// With `plan` or `--dry-run`: compare the spec with the recorded state only, no cloud
    /// call (droplets gone, changed or orphaned in the cloud are not seen).
    #[arg(long, global = true)]
    pub offline: bool,
    /// More detail (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Wait this many seconds for another infra process to release the state lock.
    #[arg(long, global = true, default_value_t = 0, value_name = "SECONDS")]
    pub lock_timeout: u64,
}

impl Global {
    pub fn verbosity(&self) -> i8 {
        if self.quiet {
            -1
        } else {
            self.verbose.min(3) as i8
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create config/, playbooks/, stdlib/, templates/ and an SSH key pair from the defaults.
    Init {
        /// Overwrite files that already exist (an existing SSH key is always kept).
        #[arg(long)]
        force: bool,
    },
    /// Check every config file and the state; list every problem.
    Validate,
    /// Show what orchestration would change (orchestrate.rhai in dry-run).
    Plan {
        /// Plan to recreate every droplet.
        #[arg(long)]
        force: bool,
    },
    /// Make the infrastructure match the spec (orchestrate.rhai).
    Orchestrate {
        /// Recreate every droplet.
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Droplets, services, load-balancer targets and monitoring, from the state file.
    Status {
        /// First compare the state with the cloud, and show droplets gone, changed outside
        /// infra or orphaned.
        #[arg(long)]
        refresh: bool,
    },
    /// How to reach one project-environment's services.
    Discover {
        project: String,
        environment: String,
    },
    /// Add a project to the spec (add_project.rhai).
    AddProject {
        name: String,
        /// Comma-separated environments, like prod,uat.
        environments: String,
        /// Number of web droplets.
        web_droplets: String,
        /// Droplet size slug, like s-1vcpu-1gb.
        size: String,
    },
    /// Change a project's number of web droplets (scale.rhai).
    Scale {
        project: String,
        web_droplets: String,
    },
    /// Remove a project from the spec (remove_project.rhai).
    RemoveProject { name: String },
    /// Delete snapshots beyond the retention count (cleanup.rhai); a dry run unless --apply.
    Cleanup {
        /// Delete them (without it, only list what would go).
        #[arg(long)]
        apply: bool,
    },
    /// Allow SSH only from this address (CIDR) and store it (update_admin_ip.rhai).
    UpdateAdminIp { cidr: String },
    /// Re-orchestrate whenever infrastructure_spec changes; reload playbooks when they change.
    Watch,
    /// Print a template rendered with the context infra would deploy it with.
    Render {
        /// A template under templates/, like nginx/nginx.conf.j2 or docker-compose.yml.j2.
        template: String,
        /// The project (Compose, Kubernetes and env-file templates).
        project: Option<String>,
        /// The environment (Compose, Kubernetes and env-file templates).
        environment: Option<String>,
        /// The service whose env file to render (env/ templates).
        #[arg(long)]
        service: Option<String>,
        /// The image tag for Compose and Kubernetes templates.
        #[arg(long, default_value = "latest")]
        release: String,
        /// Compose: only the services on this droplet. Emails: the droplet they are about.
        #[arg(long)]
        droplet: Option<String>,
        /// Override a context value, like `--set nginx.listen=8080` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Print the context (what the template can use) as JSON instead.
        #[arg(long)]
        show_context: bool,
    },
    /// A local DigitalOcean-compatible cloud whose droplets are real hosts (Docker containers).
    Sandbox {
        #[command(subcommand)]
        action: SandboxAction,
    },
    /// Build the project's images from git (or a working tree) and roll them out to UAT with
    /// zero downtime (playbooks/deploy_uat.rhai)
    DeployUat {
        project: String,
        /// Branch to check out (default: `branch` in deployment_config.json)
        #[arg(long)]
        branch: Option<String>,
        /// Deploy the working tree at --project-path as it is, uncommitted changes included
        #[arg(long, requires = "project_path")]
        local: bool,
        /// The working tree --local deploys
        #[arg(long, value_name = "DIR")]
        project_path: Option<String>,
        /// Web droplets rolled at once
        #[arg(long, default_value_t = 1, value_name = "N")]
        batch: u32,
        /// Deploy even when the same clean commit is already live
        #[arg(long)]
        force: bool,
    },
    /// Promote UAT's current release to prod: the same image digests, no rebuild
    /// (playbooks/deploy_prod.rhai)
    DeployProd {
        project: String,
        #[arg(long, default_value_t = 1, value_name = "N")]
        batch: u32,
        /// Deploy even when prod already runs UAT's current release
        #[arg(long)]
        force: bool,
    },
    /// Go back to the previous (or the named) release without a rebuild (playbooks/rollback.rhai)
    Rollback {
        project: String,
        environment: String,
        release: Option<String>,
        #[arg(long, default_value_t = 1, value_name = "N")]
        batch: u32,
    },
    /// Rebuild a failed droplet: drain it from nginx, power it off (confirmed), recreate it
    /// from its newest snapshot, start its services, route nginx to its new address
    /// (playbooks/recovery.rhai). A healthy droplet is left alone; --dry-run shows the plan
    Recover {
        /// The droplet's name, as `infra status` lists it (`hostomatic-web1`, `master`)
        droplet: String,
        /// Do not ask before rebuilding the master
        #[arg(long)]
        yes: bool,
    },
    /// List a project-environment's releases: digests, commit, when, and which is live
    Releases {
        project: String,
        environment: String,
    },
    /// Run a command on droplets at once: `all`, a role (master, web), a project or one
    /// droplet. Each line of output is prefixed by its droplet's name.
    Exec {
        /// `all`, a role, a project or a droplet.
        target: String,
        /// How many droplets to talk to at once.
        #[arg(long, default_value_t = crate::remote::DEFAULT_PARALLEL, value_name = "N")]
        parallel: usize,
        /// The command, after `--` (run by the droplet's shell as root).
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// The self-healing monitor of one droplet (a daemon: `orchestrate` and the deploys
    /// install it on every droplet and keep it running; run by hand only to debug it).
    Monitor {
        /// The droplet this monitor runs on.
        droplet: String,
        /// Listen on this UDP address instead of 0.0.0.0:7947.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Install (or update) the monitor on droplets, and start it: what `orchestrate` and the
    /// deploys do at their end. Every droplet when none is named.
    InstallMonitors { droplets: Vec<String> },
    /// Alerts by email and SMS, as config/email_config.json and config/sms_config.json say.
    Notify {
        #[command(subcommand)]
        action: NotifyAction,
    },
    /// Run any playbook. Arguments reach it as ARGS; `-- --key value` pairs as OPTS.
    Run {
        /// A playbook file, or the name of a bundled one (orchestrate, scale, ...).
        file: String,
        /// Positional arguments, available to the playbook as ARGS.
        args: Vec<String>,
        /// Re-run whenever the playbook or a module it imports changes.
        #[arg(long)]
        watch: bool,
        /// `--key value` options after `--`, available as OPTS.
        #[arg(last = true)]
        opts: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotifyAction {
    /// Send a test alert through the configured channels (both unless --email or --sms);
    /// with --dry-run, print what would be sent and send nothing.
    Test {
        /// Email only (with --sms too: both).
        #[arg(long)]
        email: bool,
        /// SMS only (with --email too: both).
        #[arg(long)]
        sms: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SandboxAction {
    /// Start the sandbox in the background and print the DO_API_URL and DO_TOKEN that use it.
    Up {
        /// Share of requests answered 429 (with retry-after) or 500, from 0 to 1.
        #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
        fail_rate: f64,
        /// Latency added to every request.
        #[arg(long, default_value_t = 0, value_name = "MS")]
        latency_ms: u64,
        /// Droplets kept booted ahead of creates from a base image, so creates are fast
        /// (0 boots every droplet on demand).
        #[arg(long, default_value_t = crate::sandbox::spares::DEFAULT_SPARES, value_name = "N")]
        spares: usize,
        /// Droplets are records only, with no host behind them: for benchmarks of fleets larger
        /// than this machine could run (creates and deletes only; no SSH, no other action).
        #[arg(long)]
        records_only: bool,
    },
    /// Stop the sandbox and remove its droplets, snapshots, network and state.
    Down,
    /// The sandbox's URL and droplets.
    Status,
    /// Build the droplet image if this machine does not have it yet, and print its tag.
    Image,
    /// Run the sandbox server in the foreground (what `up` starts in the background).
    #[command(hide = true)]
    Serve {
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long, default_value_t = 0.0)]
        fail_rate: f64,
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        #[arg(long, default_value_t = crate::sandbox::spares::DEFAULT_SPARES)]
        spares: usize,
        #[arg(long)]
        records_only: bool,
    },
}
