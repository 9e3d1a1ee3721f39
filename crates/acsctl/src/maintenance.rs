//! `acsctl cordon | uncordon | drain [--wait] WORKER`: one request on `acs.cmd.maintenance`;
//! a refusal (unknown worker, bad request) exits non-zero with the brain's words. `--wait`
//! polls the worker's own row of the status (a workers page, so it works on clusters whose
//! whole status is a summary) until it runs no replica, printing each change; it fails when
//! the brain says the drain is blocked or when `--timeout` passes.

use std::time::Duration;

use acs_events::{MaintenanceAction, MaintenanceRequest, Subjects, WorkerId, SCHEMA_VERSION};

use crate::client;
use crate::error::{Error, Result};
use crate::output::{print_json, Format};
use crate::wait::{announce, find_worker, Waiter};

/// What `acsctl cordon | uncordon | drain` was asked.
#[derive(Debug, Clone)]
pub struct MaintenanceArgs {
    pub worker: WorkerId,
    pub action: MaintenanceAction,
    /// `Some(limit)`: wait until the drain completes, at most `limit`.
    pub wait: Option<Duration>,
    pub format: Format,
}

pub async fn run(
    candidates: &[acs_node::NatsOptions],
    timeout: Duration,
    subjects: &Subjects,
    args: MaintenanceArgs,
) -> Result<()> {
    let (nc, _, refusals) = client::connect_any(candidates, timeout).await?;
    let worker = args.worker;
    let req = MaintenanceRequest {
        v: SCHEMA_VERSION,
        worker: worker.clone(),
        action: args.action,
    };
    let waiter = match args.wait {
        Some(limit) => Some(
            Waiter::start(
                &nc,
                subjects,
                limit,
                format!("off draining worker {worker}:"),
                format!("the drain of {worker}"),
            )
            .await?,
        ),
        None => None,
    };
    let reply =
        client::unless_refused(&refusals, client::maintenance(&nc, subjects, &req, timeout))
            .await?;
    let json = args.format == Format::Json;
    let Some(mut waiter) = announce(reply.note.as_deref(), &reply, args.format, waiter) else {
        return Ok(());
    };
    let mut progress = Vec::new();
    let mut hint = None;
    loop {
        let row = waiter
            .within(client::unless_refused(
                &refusals,
                find_worker(&nc, subjects, &worker, timeout, &mut hint),
            ))
            .await?;
        let Some(row) = row else {
            return Err(Error::Failed(format!(
                "worker {worker} is not in the brain's status any more: its replicas cannot be counted"
            )));
        };
        let left = row.replicas;
        if progress.last() != Some(&left) {
            if !json {
                println!("{worker}: {left} replicas left");
            }
            progress.push(left);
        }
        if left == 0 {
            break;
        }
        waiter.pause(Duration::from_millis(500)).await?;
    }
    if json {
        print_json(&serde_json::json!({
            "reply": reply,
            "done": true,
            "replicas_left": progress,
        }));
    } else {
        println!("drain of {worker} complete; it stays cordoned until `acsctl uncordon {worker}`");
    }
    Ok(())
}
