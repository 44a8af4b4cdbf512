//! `infra watch`: keep the infrastructure in step with the spec.

use std::sync::Arc;

use super::{Env, Failure, Outcome};
use crate::host::{watch, Context, Host};

pub async fn run(env: Env) -> Outcome {
    let host = Host::new(Arc::new(Context::new(env.project, env.options, env.cancel)));
    tokio::task::spawn_blocking(move || {
        watch::watch_spec(&host).map_err(Failure::flow)?;
        // The watch only ends on Ctrl-C: exit as an interrupted command does.
        Err(Failure::interrupted())
    })
    .await
    .map_err(|e| Failure::flow(format!("the watch thread failed: {e}")))?
}
