//! The builder the integration tests are written in: a project in a temp dir, the real `infra`
//! binary run in it, and assertions on exit code, stdout, stderr and files.
//!
//!     Test::init()
//!         .args(["scale", "hostomatic", "0"])
//!         .run()
//!         .assert_code(2)
//!         .assert_stderr("error: ...\n");

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long any wait in a test may take before the test fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub const BIN: &str = env!("CARGO_BIN_EXE_infra");

pub struct Test {
    dir: TempDir,
    args: Vec<String>,
}

impl Default for Test {
    fn default() -> Self {
        Self::new()
    }
}

impl Test {
    /// An empty project directory.
    pub fn new() -> Test {
        Test {
            dir: tempfile::Builder::new()
                .prefix("infra-test-")
                .tempdir()
                .expect("temp dir"),
            args: Vec::new(),
        }
    }

    /// A project made by `infra init`: the default configs, playbooks and stdlib.
    pub fn init() -> Test {
        let test = Test::new();
        test.infra(["init"]).assert_code(0);
        test
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` to `rel` (directories are created).
    pub fn file(self, rel: &str, text: &str) -> Test {
        self.write(rel, text);
        self
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create dir");
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {rel}: {e}"));
    }

    /// Replaces the first `from` in `rel` with `to`; `from` must be there.
    pub fn edit(self, rel: &str, from: &str, to: &str) -> Test {
        let text = self.read(rel);
        assert!(text.contains(from), "`{from}` is not in {rel}:\n{text}");
        self.write(rel, &text.replacen(from, to, 1));
        self
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel))
            .unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
    }

    pub fn json(&self, rel: &str) -> serde_json::Value {
        let text = self.read(rel);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel} is not JSON ({e}):\n{text}"))
    }

    pub fn args<I, S>(mut self, args: I) -> Test
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// Runs `infra` with the arguments given so far.
    pub fn run(&self) -> Output {
        self.infra(&self.args)
    }

    /// Runs `infra ARGS` in the project and waits for it.
    pub fn infra<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_string()).collect();
        let out = self
            .command(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run infra");
        Output {
            args,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: exit_code(out.status),
        }
    }

    /// Starts `infra ARGS` without waiting; stdout and stderr are piped.
    pub fn spawn<I, S>(&self, args: I) -> Running
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_string()).collect();
        let mut child = self
            .command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn infra");
        let stderr = lines(child.stderr.take().expect("stderr"));
        let stdout = lines(child.stdout.take().expect("stdout"));
        Running {
            child,
            stderr,
            stdout,
            seen: Vec::new(),
        }
    }

    fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(self.path());
        for var in [
            "DO_TOKEN",
            "DIGITALOCEAN_TOKEN",
            "RUST_LOG",
            "RUST_BACKTRACE",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Every file under the project: path relative to it -> contents.
    pub fn snapshot(&self) -> Snapshot {
        let mut files = BTreeMap::new();
        collect(self.path(), self.path(), &mut files);
        Snapshot(files)
    }
}

/// The exit code, or 128 + the signal for a process a signal ended.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .expect("an exit code or a signal")
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if link {
            // Recorded as where it points: the target may not exist.
            let target = std::fs::read_link(&path).expect("read link");
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            out.insert(rel, format!("-> {}", target.display()).into_bytes());
        } else if path.is_dir() {
            collect(root, &path, out);
        } else {
            let bytes = std::fs::read(&path).expect("read file");
            out.insert(path.strip_prefix(root).unwrap().to_path_buf(), bytes);
        }
    }
}

/// The files of a project at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(pub BTreeMap<PathBuf, Vec<u8>>);

impl Snapshot {
    /// Panics naming every file that was added, removed or changed since `self`.
    pub fn assert_same(&self, now: &Snapshot) {
        let diffs = self.changes(now);
        assert!(diffs.is_empty(), "files changed:\n{}", diffs.join("\n"));
    }

    /// Every file that was added, removed or changed since `self`, described. An empty state
    /// lock file appearing is not a change: it is how infra leaves a lock it has released.
    pub fn changes(&self, now: &Snapshot) -> Vec<String> {
        let mut now = now.clone();
        let lock = Path::new("config/.infra/state.lock");
        if !self.0.contains_key(lock) && now.0.get(lock).is_some_and(|b| b.is_empty()) {
            now.0.remove(lock);
        }
        let mut diffs = Vec::new();
        for (path, before) in &self.0 {
            match now.0.get(path) {
                None => diffs.push(format!("removed: {}", path.display())),
                Some(after) if after != before => diffs.push(format!(
                    "changed: {}\n--- before\n{}\n--- after\n{}",
                    path.display(),
                    String::from_utf8_lossy(before),
                    String::from_utf8_lossy(after)
                )),
                Some(_) => {}
            }
        }
        for path in now.0.keys() {
            if !self.0.contains_key(path) {
                diffs.push(format!("added: {}", path.display()));
            }
        }
        diffs
    }
}

/// What a finished run printed and returned.
#[derive(Debug)]
pub struct Output {
    pub args: Vec<String>,
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl Output {
    fn context(&self) -> String {
        format!(
            "infra {}\nexit code: {}\n--- stdout\n{}--- stderr\n{}---",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }

    pub fn assert_code(&self, code: i32) -> &Output {
        assert_eq!(self.code, code, "unexpected exit code\n{}", self.context());
        self
    }

    pub fn assert_success(&self) -> &Output {
        self.assert_code(0)
    }

    pub fn assert_stdout(&self, exact: &str) -> &Output {
        assert_eq!(self.stdout, exact, "unexpected stdout\n{}", self.context());
        self
    }

    pub fn assert_stderr(&self, exact: &str) -> &Output {
        assert_eq!(self.stderr, exact, "unexpected stderr\n{}", self.context());
        self
    }

    pub fn assert_stdout_contains(&self, part: &str) -> &Output {
        assert!(
            self.stdout.contains(part),
            "stdout lacks {part:?}\n{}",
            self.context()
        );
        self
    }

    pub fn assert_stderr_contains(&self, part: &str) -> &Output {
        assert!(
            self.stderr.contains(part),
            "stderr lacks {part:?}\n{}",
            self.context()
        );
        self
    }

    /// Stdout parsed as one JSON value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.context()))
    }
}

fn lines(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// An `infra` process still running, its stderr read line by line as it comes.
pub struct Running {
    pub child: Child,
    stderr: Receiver<String>,
    stdout: Receiver<String>,
    /// Stderr lines read so far.
    pub seen: Vec<String>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads stderr until a line satisfies `want` (which it returns), failing after
    /// [`PATIENCE`] or when the process closes stderr first.
    pub fn wait_for_line(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.kill();
                    panic!(
                        "no stderr line {what} within {PATIENCE:?}; stderr so far:\n{}",
                        self.seen.join("\n")
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().expect("wait");
                    panic!(
                        "infra exited ({status}) before printing a line {what}; stderr:\n{}",
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    /// Reads the stderr lines that come within `d` into [`Running::seen`], whatever they are.
    pub fn read_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(line) = self
            .stderr
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
    }

    /// Waits for a stderr line equal to `line`.
    pub fn wait_for(&mut self, line: &str) -> String {
        self.wait_for_line(&format!("{line:?}"), |l| l == line)
    }

    /// Sends `signal` (e.g. `libc`'s SIGINT = 2) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Kills the process (SIGKILL) if it still runs, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (at most [`PATIENCE`]) for the process to end; returns its output from now on.
    pub fn finish(mut self) -> Output {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "infra did not exit within {PATIENCE:?}; stderr so far:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The pipes close when the process ends; the reader threads then finish.
        let mut stderr: Vec<String> = std::mem::take(&mut self.seen);
        while let Ok(line) = self.stderr.recv_timeout(PATIENCE) {
            stderr.push(line);
        }
        let mut stdout = Vec::new();
        while let Ok(line) = self.stdout.recv_timeout(PATIENCE) {
            stdout.push(line);
        }
        let join = |lines: Vec<String>| lines.into_iter().map(|l| l + "\n").collect::<String>();
        Output {
            args: Vec::new(),
            stdout: join(stdout),
            stderr: join(stderr),
            code: exit_code(status),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failing test must not leave a watcher or a sleeping playbook behind.
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Tests that skipped because Docker is missing, under `INFRA_SKIP_DOCKER_TESTS=1`.
static DOCKER_SKIPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn say_docker_skips() {
    let n = DOCKER_SKIPS.load(std::sync::atomic::Ordering::SeqCst);
    // Written straight to fd 2 at exit, after the test runner's summary.
    let line = format!(
        "INFRA_SKIP_DOCKER_TESTS=1: {n} test{} that need Docker were skipped\n",
        if n == 1 { "" } else { "s" }
    );
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
    }
}

/// Whether the tests that need Docker and an SSH client can run. Without them a test fails,
/// saying what to run, unless the user opts out with `INFRA_SKIP_DOCKER_TESTS=1`: then it is
/// skipped and the number skipped is printed when the test run ends. The suite never passes
/// green while silently leaving out what it could not run.
pub fn docker_tests_can_run() -> bool {
    let mut missing = None;
    for (tool, probe) in [("docker", "version"), ("ssh", "-V")] {
        let ok = Command::new(tool)
            .arg(probe)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            missing = Some(tool);
            break;
        }
    }
    let Some(tool) = missing else {
        return true;
    };
    if std::env::var("INFRA_SKIP_DOCKER_TESTS").as_deref() != Ok("1") {
        panic!(
            "Docker is needed: run .ci/prepare-sandbox (`{tool}` is not usable; set INFRA_SKIP_DOCKER_TESTS=1 to skip the tests that need it)"
        );
    }
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| unsafe {
        libc::atexit(say_docker_skips);
    });
    DOCKER_SKIPS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    eprintln!("skipped: `{tool}` is not usable and INFRA_SKIP_DOCKER_TESTS=1 is set");
    false
}
