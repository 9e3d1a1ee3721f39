//! `acsctl cordon | uncordon | drain [--wait] WORKER`: one request on `acs.cmd.maintenance`;
//! a refusal (unknown worker, bad request) exits non-zero with the brain's words. `--wait`
//! polls `acs.status` until the worker runs no replica, printing each change.

use acs_events::{MaintenanceAction, MaintenanceRequest, Subjects, WorkerId, SCHEMA_VERSION};

use crate::client;
use crate::error::Result;

pub async fn run(
    candidates: &[acs_node::NatsOptions],
    timeout: std::time::Duration,
    subjects: &Subjects,
    worker: WorkerId,
    action: MaintenanceAction,
    wait: bool,
) -> Result<()> {
    let (nc, _, refusals) = client::connect_any(candidates, timeout).await?;
    let req = MaintenanceRequest {
        v: SCHEMA_VERSION,
        worker: worker.clone(),
        action,
    };
    let reply =
        client::unless_refused(&refusals, client::maintenance(&nc, subjects, &req, timeout))
            .await?;
    println!("{}", reply.note.as_deref().unwrap_or("ok"));
    if !wait {
        return Ok(());
    }
    let mut last = None;
    loop {
        let status =
            client::unless_refused(&refusals, client::status(&nc, subjects, timeout)).await?;
        let left = status
            .workers
            .iter()
            .find(|w| w.id == worker)
            .map_or(0, |w| w.replicas);
        if last != Some(left) {
            println!("{worker}: {left} replicas left");
            last = Some(left);
        }
        if left == 0 {
            println!(
                "drain of {worker} complete; it stays cordoned until `acsctl uncordon {worker}`"
            );
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
