//! `acsctl replace REPLICA [--wait]`: one request on `acs.cmd.replica`; the brain starts a
//! replacement, then drains and stops REPLICA once the replacement serves. A refusal (unknown
//! replica, not healthy, a move already under way) exits non-zero with the brain's words.
//! `--wait` follows REPLICA in its service's status pages (so it works on clusters whose whole
//! status is a summary) until it is gone; it fails when the brain says the move is blocked or
//! when `--timeout` passes.

use std::time::Duration;

use acs_events::{
    ReplicaAction, ReplicaReply, ReplicaRequest, ServiceName, Subjects, SCHEMA_VERSION,
};

use crate::client;
use crate::error::Result;
use crate::output::{print_json, Format};
use crate::wait::{announce, find_replica, Waiter};

pub async fn run(
    candidates: &[acs_node::NatsOptions],
    timeout: Duration,
    subjects: &Subjects,
    replica: String,
    wait: Option<Duration>,
    format: Format,
) -> Result<()> {
    let (nc, _, refusals) = client::connect_any(candidates, timeout).await?;
    let req = ReplicaRequest {
        v: SCHEMA_VERSION,
        replica: replica.clone(),
        action: ReplicaAction::Replace,
    };
    let waiter = match wait {
        Some(limit) => Some(
            Waiter::start(
                &nc,
                subjects,
                limit,
                replica.clone(),
                format!("the replacement of {replica}"),
            )
            .await?,
        ),
        None => None,
    };
    let reply: ReplicaReply = client::unless_refused(
        &refusals,
        client::ask(&nc, subjects, subjects.replica_command(), &req, timeout),
    )
    .await?;
    let json = format == Format::Json;
    let Some(mut waiter) = announce(reply.note.as_deref(), &reply, format, waiter) else {
        return Ok(());
    };
    let service = reply
        .service
        .as_deref()
        .and_then(|s| ServiceName::new(s).ok());
    let mut states: Vec<String> = Vec::new();
    loop {
        let found = waiter
            .within(client::unless_refused(
                &refusals,
                find_replica(&nc, subjects, service.as_ref(), &replica, timeout),
            ))
            .await?;
        let Some(r) = found else { break };
        let now = format!(
            "{}{}",
            crate::status::state_name(r.state),
            if r.draining { " (draining)" } else { "" }
        );
        if states.last() != Some(&now) {
            if !json {
                println!("{replica}: {now}");
            }
            states.push(now);
        }
        waiter.pause(Duration::from_millis(300)).await?;
    }
    if json {
        print_json(&serde_json::json!({ "reply": reply, "done": true, "states": states }));
    } else {
        println!("{replica} is gone; its replacement serves");
    }
    Ok(())
}
