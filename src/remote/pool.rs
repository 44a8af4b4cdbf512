//! `Pool`: one session per host, opened when first needed and reused after, and `fan_out` to run
//! the same work on many hosts at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::stream::{self, StreamExt};

use super::{Connector, Host, RemoteError, Session};

/// A host's session, or none yet; its own lock so that two callers asking for the same host at
/// once make one connection, while other hosts connect in parallel.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Session>>>>;

#[derive(Debug)]
pub struct Pool {
    connector: Arc<Connector>,
    slots: Mutex<HashMap<Host, Slot>>,
}

impl Pool {
    pub fn new(connector: Connector) -> Pool {
        Pool::shared(Arc::new(connector))
    }

    pub fn shared(connector: Arc<Connector>) -> Pool {
        Pool {
            connector,
            slots: Mutex::new(HashMap::new()),
        }
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The open session to `host`, connecting if there is none or the last one ended.
    pub async fn session(&self, host: &Host) -> Result<Arc<Session>, RemoteError> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(host.clone())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(session) = slot.as_ref().filter(|s| !s.is_closed()) {
            return Ok(session.clone());
        }
        let session = Arc::new(self.connector.connect(host).await?);
        *slot = Some(session.clone());
        Ok(session)
    }

    /// Runs `work` on each of `hosts`, at most `max_concurrency` at a time, and returns each
    /// host's result in the order of `hosts`. A host that cannot be reached, or whose work
    /// fails, has its error in its result; the others carry on.
    pub async fn fan_out<T, E, F, Fut>(
        &self,
        hosts: &[Host],
        max_concurrency: usize,
        work: F,
    ) -> Vec<(Host, Result<T, E>)>
    where
        F: Fn(Arc<Session>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<RemoteError>,
    {
        let work = &work;
        let mut results: Vec<(usize, Result<T, E>)> = stream::iter(hosts.iter().enumerate())
            .map(|(i, host)| async move {
                let result = match self.session(host).await {
                    Ok(session) => work(session).await,
                    Err(e) => Err(E::from(e)),
                };
                (i, result)
            })
            .buffer_unordered(max_concurrency.max(1))
            .collect()
            .await;
        results.sort_by_key(|(i, _)| *i);
        results
            .into_iter()
            .map(|(i, result)| (hosts[i].clone(), result))
            .collect()
    }

    /// Closes and drops the session to `host`, if there is one (the droplet is being deleted or
    /// recreated).
    pub async fn remove(&self, host: &Host) {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(host);
        if let Some(slot) = slot {
            if let Some(session) = slot.lock().await.take() {
                session.close().await;
            }
        }
    }

    /// Closes every session.
    pub async fn close(&self) {
        let slots: Vec<Slot> = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, slot)| slot)
            .collect();
        for slot in slots {
            if let Some(session) = slot.lock().await.take() {
                session.close().await;
            }
        }
    }
}
