//! `wait_for_ssh`: connect to a droplet that is still booting, retrying until its sshd answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Connector, Host, RemoteError, Session};

/// The pause between attempts starts here and doubles up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const LONGEST_PAUSE: Duration = Duration::from_secs(2);

/// Connects to `host`, retrying until it answers or `deadline` passes, and stops early when
/// `cancel` is set (Ctrl-C). Retried: no answer, a refused or broken connection, and a refused
/// key (a booting droplet may run sshd before its authorized key is in place). Not retried: a
/// changed host key, which waiting does not fix.
pub async fn wait_for_ssh(
    connector: &Connector,
    host: &Host,
    deadline: Instant,
    cancel: &AtomicBool,
) -> Result<Session, RemoteError> {
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    let mut last = None;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err(RemoteError::Cancelled { host: host.clone() });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let last = last.unwrap_or_else(|| RemoteError::ConnectTimeout {
                host: host.clone(),
                port: connector.options().port,
                after: Duration::ZERO,
            });
            return Err(RemoteError::WaitGaveUp {
                host: host.clone(),
                after: started.elapsed(),
                last: Box::new(last),
            });
        }
        let attempt = tokio::select! {
            attempt = tokio::time::timeout(left, connector.connect(host)) => attempt,
            () = cancelled(cancel) => return Err(RemoteError::Cancelled { host: host.clone() }),
        };
        match attempt {
            Ok(Ok(session)) => return Ok(session),
            Ok(Err(e)) if e.is_transient() || matches!(e, RemoteError::AuthRejected { .. }) => {
                tracing::debug!("waiting for SSH on {host}: {e}");
                last = Some(e);
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                last = Some(RemoteError::ConnectTimeout {
                    host: host.clone(),
                    port: connector.options().port,
                    after: left,
                })
            }
        }
        let nap = pause.min(deadline.saturating_duration_since(Instant::now()));
        tokio::select! {
            () = tokio::time::sleep(nap) => {}
            () = cancelled(cancel) => return Err(RemoteError::Cancelled { host: host.clone() }),
        }
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// Resolves once `flag` is set. Polled: a plain flag is what a Ctrl-C handler can set.
async fn cancelled(flag: &AtomicBool) {
    while !flag.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
