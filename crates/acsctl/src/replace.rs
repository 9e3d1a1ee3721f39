//! `acsctl replace REPLICA [--wait]`: one request on `acs.cmd.replica`; the brain starts a
//! replacement, then drains and stops REPLICA once the replacement serves. A refusal (unknown
//! replica, not healthy, a move already under way) exits non-zero with the brain's words.
//! `--wait` polls `acs.status` until REPLICA is gone.

use acs_events::{ReplicaAction, ReplicaReply, ReplicaRequest, Subjects, SCHEMA_VERSION};

use crate::client;
use crate::error::Result;

pub async fn run(
    candidates: &[acs_node::NatsOptions],
    timeout: std::time::Duration,
    subjects: &Subjects,
    replica: String,
    wait: bool,
) -> Result<()> {
    let (nc, _, refusals) = client::connect_any(candidates, timeout).await?;
    let req = ReplicaRequest {
        v: SCHEMA_VERSION,
        replica: replica.clone(),
        action: ReplicaAction::Replace,
    };
    let reply: ReplicaReply = client::unless_refused(
        &refusals,
        client::ask(&nc, subjects, subjects.replica_command(), &req, timeout),
    )
    .await?;
    println!("{}", reply.note.as_deref().unwrap_or("ok"));
    if !wait {
        return Ok(());
    }
    let mut last = String::new();
    loop {
        let status =
            client::unless_refused(&refusals, client::status(&nc, subjects, timeout)).await?;
        let now = status
            .services
            .iter()
            .flat_map(|s| &s.replicas)
            .find(|r| r.id.as_str() == replica)
            .map(|r| {
                format!(
                    "{replica}: {}{}",
                    crate::status::state_name(r.state),
                    if r.draining { " (draining)" } else { "" }
                )
            });
        let Some(now) = now else {
            println!("{replica} is gone; its replacement serves");
            return Ok(());
        };
        if now != last {
            println!("{now}");
            last = now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}
