//! `Session`: one authenticated SSH connection to a droplet, running many commands, each on its
//! own channel, each with a timeout.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use russh::client;
use russh::{ChannelMsg, Sig};

use super::connector::Verifier;
use super::{Host, RemoteError};

/// How long stopping a command that timed out may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many trailing lines of standard error a failed command's error shows.
const STDERR_LINES: usize = 12;

pub struct Session {
    host: Host,
    handle: client::Handle<Verifier>,
    command_timeout: Duration,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.host)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// What a command did: its exit status and everything it wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit status; 255 when the command was killed by a signal (as `ssh` reports it).
    pub status: u32,
    /// The signal that killed the command (`KILL`, `TERM`, ...), if one did.
    pub signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == 0 && self.signal.is_none()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// `exit status 3`, or `signal KILL`.
    pub fn describe_status(&self) -> String {
        match &self.signal {
            Some(signal) => format!("signal {signal}"),
            None => format!("exit status {}", self.status),
        }
    }
}

impl Session {
    pub(super) fn new(
        host: Host,
        handle: client::Handle<Verifier>,
        command_timeout: Duration,
    ) -> Session {
        Session {
            host,
            handle,
            command_timeout,
        }
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Whether the connection has ended (the droplet went away, or [`Session::close`]).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Runs `command` (a shell command line) with the default timeout and no input. A non-zero
    /// exit status is not an error here: see [`Session::run`].
    pub async fn exec(&self, command: &str) -> Result<ExecOutput, RemoteError> {
        self.exec_with(command, None, self.command_timeout).await
    }

    /// Runs `command`, failing with [`RemoteError::CommandFailed`] unless it exits with 0.
    pub async fn run(&self, command: &str) -> Result<ExecOutput, RemoteError> {
        let output = self.exec(command).await?;
        self.check(command, output)
    }

    /// Runs `command` with `stdin` as its standard input (never logged: it may hold secrets),
    /// giving up after `timeout`, when the command's processes are sent `TERM`.
    pub async fn exec_with(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput, RemoteError> {
        tracing::debug!(
            "{}: running `{command}`{}",
            self.host,
            stdin.map_or(String::new(), |s| format!(
                " with {} bytes of input",
                s.len()
            ))
        );
        // sshd makes each command's shell the leader of a new process group; the shell notes its
        // id so that a timeout can stop the whole group. (OpenSSH refuses the SSH `signal`
        // request in root sessions: "session signalling requires privilege separation".)
        let pid_file = pid_file();
        let line = format!(
            "trap 'rm -f {pid_file}' EXIT\n{{ echo $$ >{pid_file}; }} 2>/dev/null\n{command}"
        );
        let started = Instant::now();
        match self.channel_exec(&line, command, stdin, timeout).await? {
            Some(output) => {
                tracing::debug!(
                    "{}: `{command}` ended with {} after {} ms",
                    self.host,
                    output.describe_status(),
                    started.elapsed().as_millis()
                );
                Ok(output)
            }
            None => {
                let stop =
                    format!("kill -TERM -- -$(cat {pid_file}) 2>/dev/null; rm -f {pid_file}");
                if let Err(e) = self.channel_exec(&stop, &stop, None, STOP_TIMEOUT).await {
                    tracing::warn!("{}: cannot stop `{command}`: {e}", self.host);
                }
                Err(self.timed_out(command, timeout))
            }
        }
    }

    /// Runs the shell command `line` on a new channel (`command` is how messages name it).
    /// `None` when `timeout` passed first; the channel is closed then.
    async fn channel_exec(
        &self,
        line: &str,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Option<ExecOutput>, RemoteError> {
        let started = Instant::now();
        let broken = |e: russh::Error| RemoteError::Connection {
            host: self.host.clone(),
            reason: e.to_string().to_lowercase(),
        };
        let Ok(channel) = tokio::time::timeout(timeout, self.handle.channel_open_session()).await
        else {
            return Ok(None);
        };
        let channel = channel.map_err(broken)?;
        channel.exec(true, line).await.map_err(broken)?;
        let (mut reader, writer) = channel.split();

        let send = async {
            if let Some(input) = stdin {
                writer.data(input).await?;
            }
            // Always: a command that reads its input must see it end.
            writer.eof().await
        };
        let receive = async {
            let mut output = ExecOutput::default();
            let mut status = None;
            while let Some(message) = reader.wait().await {
                match message {
                    ChannelMsg::Data { data } => output.stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        output.stderr.extend_from_slice(&data)
                    }
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        output.signal = Some(signal_name_of(&signal_name))
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            (output, status)
        };
        let both = async {
            tokio::pin!(send, receive);
            let mut sent: Option<Result<(), russh::Error>> = None;
            loop {
                tokio::select! {
                    result = &mut send, if sent.is_none() => sent = Some(result),
                    received = &mut receive => return (received, sent),
                }
            }
        };
        let left = timeout.saturating_sub(started.elapsed());
        let Ok(((mut output, status), sent)) = tokio::time::timeout(left, both).await else {
            let _ = writer.close().await;
            return Ok(None);
        };
        match (status, &output.signal) {
            (Some(status), _) => output.status = status,
            (None, Some(_)) => output.status = 255,
            (None, None) => {
                let reason = match sent {
                    Some(Err(e)) => format!("`{command}` ended without an exit status: {e}"),
                    _ => format!("`{command}` ended without an exit status"),
                };
                return Err(RemoteError::Connection {
                    host: self.host.clone(),
                    reason,
                });
            }
        }
        Ok(Some(output))
    }

    /// Writes `contents` to `path` on the droplet with permission bits `mode` (e.g. `0o600`),
    /// replacing any file there atomically. The contents travel on standard input, so they are
    /// never logged: env files and keys are safe to upload.
    pub async fn upload(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), RemoteError> {
        assert!(
            mode <= 0o7777,
            "file mode {mode:o} has more than permission bits"
        );
        let target = shell_quote(path);
        // Written under umask 077 and chmod-ed before the rename: the file is never readable by
        // others, not even for a moment.
        let command = format!(
            "umask 077 && tmp={target}.infra-upload.$$ && {{ cat > \"$tmp\" && chmod {mode:o} \"$tmp\" && mv -f \"$tmp\" {target}; }} || {{ status=$?; rm -f \"$tmp\"; exit $status; }}"
        );
        let output = self
            .exec_with(&command, Some(contents), self.command_timeout)
            .await?;
        self.check(&format!("upload to {path}"), output).map(|_| ())
    }

    /// A `direct-tcpip` channel to `host:port` as the droplet sees them (`ssh -L`): what a
    /// [`super::Tunnel`] copies one local connection through.
    pub async fn open_direct_tcpip(
        &self,
        host: &str,
        port: u16,
        originator: std::net::SocketAddr,
    ) -> Result<russh::Channel<client::Msg>, RemoteError> {
        self.handle
            .channel_open_direct_tcpip(
                host,
                u32::from(port),
                originator.ip().to_string(),
                u32::from(originator.port()),
            )
            .await
            .map_err(|e| RemoteError::Connection {
                host: self.host.clone(),
                reason: format!("cannot open a tunnel to {host}:{port}: {e}"),
            })
    }

    /// Ends the connection.
    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }

    fn check(&self, command: &str, output: ExecOutput) -> Result<ExecOutput, RemoteError> {
        if output.success() {
            return Ok(output);
        }
        let stderr = output.stderr_text();
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(STDERR_LINES)..].join("\n");
        Err(RemoteError::CommandFailed {
            host: self.host.clone(),
            command: command.to_owned(),
            status: output.describe_status(),
            stderr: tail,
        })
    }

    fn timed_out(&self, command: &str, after: Duration) -> RemoteError {
        RemoteError::CommandTimeout {
            host: self.host.clone(),
            command: command.to_owned(),
            after,
        }
    }
}

/// A file for a command's process group id, unique to this run of infra (other machines may run
/// infra against the same droplet) and to the command.
fn pid_file() -> String {
    static RUN: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let run = RUN.get_or_init(|| rand_core::RngCore::next_u64(&mut rand_core::OsRng));
    format!(
        "/tmp/.infra-exec-{run:016x}-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `KILL` for `Sig::KILL`, the name a custom signal was sent under otherwise.
fn signal_name_of(signal: &Sig) -> String {
    match signal {
        Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

/// `text` as one word for a POSIX shell: `'it'\''s'`.
pub fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b))
    {
        return text.to_owned();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("/etc/infra/app.env"), "/etc/infra/app.env");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's $HOME"), r"'it'\''s $HOME'");
    }
}
