//! Exits of this worker's containers: `die` events from the Docker event stream, and a
//! reconciliation against the engine for exits missed while the stream was down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use acs_events::ReplicaId;
use bollard::query_parameters::EventsOptionsBuilder;
use futures::StreamExt;
use tracing::{debug, warn};

use super::{status_of, Inner, LABEL_REPLICA};

/// Follows `die` events of this worker's containers; re-opens the stream after errors and
/// reconciles with `docker ps` each time it (re)opens.
pub(super) async fn watch_events(inner: Arc<Inner>) {
    let mut filters: HashMap<&str, Vec<String>> = HashMap::new();
    filters.insert("type", vec!["container".into()]);
    filters.insert("event", vec!["die".into()]);
    filters.insert("label", vec![inner.own_label()]);
    loop {
        let opts = EventsOptionsBuilder::default().filters(&filters).build();
        let mut stream = inner.docker.events(Some(opts));
        reconcile(&inner).await;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    let Some(actor) = ev.actor else { continue };
                    let (Some(id), Some(attrs)) = (actor.id, actor.attributes) else {
                        continue;
                    };
                    let Some(replica) = attrs
                        .get(LABEL_REPLICA)
                        .and_then(|r| ReplicaId::new(r.as_str()).ok())
                    else {
                        continue;
                    };
                    let code = attrs.get("exitCode").and_then(|c| c.parse::<i32>().ok());
                    inner.gone(&replica, &id, code, exit_reason(code));
                }
                Err(e) => {
                    warn!(error = %e, "Docker event stream failed; reconnecting");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Reports every tracked replica whose container no longer runs.
pub(super) async fn reconcile(inner: &Arc<Inner>) {
    let tracked: Vec<(ReplicaId, String)> = inner
        .entries
        .lock()
        .unwrap()
        .iter()
        .map(|(r, e)| (r.clone(), e.container.clone()))
        .collect();
    for (replica, container) in tracked {
        match inner.docker.inspect_container(&container, None).await {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                if state.running != Some(true) {
                    let code = state.exit_code.map(|c| c as i32);
                    inner.gone(&replica, &container, code, exit_reason(code));
                }
            }
            Err(e) if status_of(&e) == Some(404) => {
                inner.gone(&replica, &container, None, "container disappeared".into());
            }
            Err(e) => debug!(replica = %replica, error = %e, "cannot inspect container"),
        }
    }
}

fn exit_reason(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exited with status {c}"),
        None => "exited".to_string(),
    }
}
