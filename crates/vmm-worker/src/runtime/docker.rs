//! Replicas as Docker containers (bollard, through the local Docker socket or `DOCKER_HOST`).
//!
//! - One container per replica, named `acs-<worker>-<replica>`, labelled `acs.worker`,
//!   `acs.service`, `acs.replica` (plus `acs.port`, `acs.health_path`, `acs.started_ms`), so a
//!   restarted worker finds its own containers by label and adopts the running ones (exited ones
//!   are removed).
//! - The image must exist locally (nothing is pulled). `spec.command`, when given, replaces the
//!   image's CMD (`{port}` / `{replica}` substituted); `PORT` (the container port, `spec.port`),
//!   `ACS_REPLICA` and `spec.env` are set. `spec.cpus` / `spec.memory_mb` become `NanoCpus` /
//!   `Memory`. No restart policy: the brain replaces replicas that die.
//! - Hardened: `no-new-privileges`, every capability dropped but the allow-listed ones
//!   (`--allow-cap`), a pids limit (`--pids-limit`).
//! - Addresses ([`Advertise`]): either the container port is published on a free host port of
//!   the advertise address (when it is an IP; all addresses otherwise) and advertised as
//!   `<advertise_host>:<host port>`, or the container's IP on its network is advertised as
//!   `<ip>:<port>`.
//! - Exits come from the Docker event stream (`die` events of this worker's containers); the
//!   dead container is removed. The stream is re-opened after errors, and a reconciliation
//!   against `docker ps` catches exits missed meanwhile.
//! - CPU and memory per replica come from a `docker stats` stream per container.
//! - Stop: `docker stop -t <grace>` (SIGTERM, SIGKILL after the grace period), then remove.
//!
//! Here: the Docker calls (create, start, stop, adopt). `body`: the container as plain data
//! (create body, labels). `watch`: exits. `stats`: CPU and memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use acs_events::{ReplicaId, ReplicaSpec, RuntimeKind, WorkerId};
use async_trait::async_trait;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use super::{by_id, ReplicaStats, Result, RunningReplica, Runtime, RuntimeError, RuntimeEvent};
use crate::clock::unix_now_ms;
use crate::config::Advertise;

mod body;
mod stats;
mod watch;

pub use body::{
    addresses, container_body, ReplicaLabels, LABEL_HEALTH, LABEL_PORT, LABEL_REPLICA,
    LABEL_SERVICE, LABEL_STARTED, LABEL_WORKER,
};
pub use stats::stats_of;
use watch::{reconcile, watch_events};

#[derive(Debug, Clone)]
pub struct DockerOptions {
    pub worker: WorkerId,
    pub advertise: Advertise,
    pub advertise_host: String,
    /// Network the containers join; `None` = Docker's default bridge.
    pub network: Option<String>,
    /// Capabilities the containers keep (`CapAdd` after `CapDrop: ALL`).
    pub caps: Vec<String>,
    /// `PidsLimit` of every container; 0 = none.
    pub pids_limit: u32,
}

struct Entry {
    running: RunningReplica,
    container: String,
    stats_task: Option<AbortHandle>,
}

struct Inner {
    docker: Docker,
    opts: DockerOptions,
    entries: Mutex<HashMap<ReplicaId, Entry>>,
    stats: Mutex<HashMap<ReplicaId, ReplicaStats>>,
    events_tx: mpsc::UnboundedSender<RuntimeEvent>,
}

pub struct DockerRuntime {
    inner: Arc<Inner>,
    events_rx: Mutex<Option<mpsc::UnboundedReceiver<RuntimeEvent>>>,
    watcher: AbortHandle,
}

fn docker_err(what: &str, e: DockerError) -> RuntimeError {
    RuntimeError::Io {
        what: format!("docker: {what}"),
        err: std::io::Error::other(e.to_string()),
    }
}

fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

impl DockerRuntime {
    /// Connects to the local Docker engine (negotiating the API version) and starts watching
    /// this worker's containers.
    pub async fn connect(opts: DockerOptions) -> Result<Self> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| docker_err("connect", e))?;
        let docker = docker.negotiate_version().await.map_err(|e| {
            docker_err(
                "cannot reach the Docker engine (is it running? is the socket mounted?)",
                e,
            )
        })?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            docker,
            opts,
            entries: Mutex::new(HashMap::new()),
            stats: Mutex::new(HashMap::new()),
            events_tx,
        });
        let watcher = tokio::spawn(watch_events(inner.clone())).abort_handle();
        info!(worker = %inner.opts.worker, network = ?inner.opts.network, advertise = ?inner.opts.advertise, "Docker runtime ready");
        Ok(Self {
            inner,
            events_rx: Mutex::new(Some(events_rx)),
            watcher,
        })
    }

    pub fn container_name(&self, replica: &ReplicaId) -> String {
        format!("acs-{}-{replica}", self.inner.opts.worker)
    }
}

impl Inner {
    /// The container of `replica` is gone: forget it, report it (once), remove the container.
    fn gone(
        self: &Arc<Self>,
        replica: &ReplicaId,
        container: &str,
        code: Option<i32>,
        reason: String,
    ) {
        {
            let mut entries = self.entries.lock().unwrap();
            match entries.get(replica) {
                Some(e) if e.container == container => {
                    if let Some(t) = entries.remove(replica).and_then(|e| e.stats_task) {
                        t.abort();
                    }
                }
                _ => return,
            }
        }
        self.stats.lock().unwrap().remove(replica);
        info!(replica = %replica, container = %short(container), %reason, "replica container is gone");
        let _ = self.events_tx.send(RuntimeEvent::Exited {
            replica: replica.clone(),
            code,
            reason,
        });
        let this = self.clone();
        let container = container.to_string();
        tokio::spawn(async move { this.remove(&container).await });
    }

    async fn remove(&self, container: &str) {
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(container, Some(opts)).await {
            Ok(()) => debug!(container = %short(container), "container removed"),
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => {}
            Err(e) => warn!(container = %short(container), error = %e, "cannot remove container"),
        }
    }

    /// `docker create` + `docker start` + `docker inspect`; the id and the inspection of the
    /// started container. A container that was created but fails later is removed.
    async fn create_and_start(
        &self,
        replica: &ReplicaId,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<(String, ContainerInspectResponse)> {
        let image = body.image.clone().unwrap_or_default();
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(name).build()),
                body,
            )
            .await
            .map_err(|e| RuntimeError::Start {
                replica: replica.clone(),
                message: match status_of(&e) {
                    Some(404) => {
                        format!("image {image:?} not found locally (nothing is pulled): {e}")
                    }
                    _ => format!("create container: {e}"),
                },
            })?;
        let id = created.id;
        if let Err(e) = self.docker.start_container(&id, None).await {
            return Err(self
                .discard(replica, &id, format!("start container: {e}"))
                .await);
        }
        match self.docker.inspect_container(&id, None).await {
            Ok(info) => Ok((id, info)),
            Err(e) => Err(self
                .discard(replica, &id, format!("inspect container: {e}"))
                .await),
        }
    }

    /// Removes a container that failed to start; the start error to return.
    async fn discard(&self, replica: &ReplicaId, container: &str, message: String) -> RuntimeError {
        self.remove(container).await;
        RuntimeError::Start {
            replica: replica.clone(),
            message,
        }
    }

    /// Tracks a running replica and follows its stats.
    fn track(self: &Arc<Self>, running: RunningReplica, container: &str) {
        let stats_task = Some(self.start_stats(&running.id, container));
        self.entries.lock().unwrap().insert(
            running.id.clone(),
            Entry {
                running,
                container: container.to_string(),
                stats_task,
            },
        );
    }

    /// Forgets every replica and stops their stats streams; the containers keep running.
    fn forget_all(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, e) in entries.drain() {
            if let Some(t) = e.stats_task {
                t.abort();
            }
        }
    }

    fn container_of(&self, replica: &ReplicaId) -> Option<String> {
        let entries = self.entries.lock().unwrap();
        entries.get(replica).map(|e| e.container.clone())
    }

    /// The label filter that selects this worker's containers.
    fn own_label(&self) -> String {
        format!("{LABEL_WORKER}={}", self.opts.worker)
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Docker
    }

    async fn start(&self, replica: &ReplicaId, spec: &ReplicaSpec) -> Result<RunningReplica> {
        let started_ms = unix_now_ms();
        let body = container_body(&self.inner.opts, replica, spec, started_ms)?;
        let image = body.image.clone().unwrap_or_default();
        if self.inner.entries.lock().unwrap().contains_key(replica) {
            return Err(RuntimeError::Start {
                replica: replica.clone(),
                message: "it is already running".into(),
            });
        }
        let name = self.container_name(replica);
        // A leftover container with the same name (e.g. exited before a crash) would block create.
        self.inner.remove(&name).await;
        let (id, info) = self.inner.create_and_start(replica, &name, body).await?;
        let (addr, health_addr) = match addresses(&self.inner.opts, &info, spec.port) {
            Ok(a) => a,
            Err(e) => return Err(self.inner.discard(replica, &id, e).await),
        };
        let running = RunningReplica {
            id: replica.clone(),
            service: spec.service.clone(),
            addr,
            health_addr,
            health_path: spec.health_path.clone(),
            pid: None,
            container_id: Some(id.clone()),
            started_ms,
            adopted: false,
        };
        self.inner.track(running.clone(), &id);
        info!(replica = %replica, service = %spec.service, container = %short(&id), %image, addr = %running.addr, "replica container started");
        // It may have died between `start` and now, before it was tracked.
        if info.state.and_then(|s| s.running) != Some(true) {
            reconcile(&self.inner).await;
        }
        Ok(running)
    }

    async fn stop(&self, replica: &ReplicaId, grace: Duration) -> Result<()> {
        let Some(container) = self.inner.container_of(replica) else {
            debug!(replica = %replica, "stop: not running");
            return Ok(());
        };
        let t = grace.as_secs_f64().ceil().min(i32::MAX as f64) as i32;
        info!(replica = %replica, container = %short(&container), grace_s = t, "stopping replica container");
        let opts = StopContainerOptionsBuilder::default().t(t).build();
        match self
            .inner
            .docker
            .stop_container(&container, Some(opts))
            .await
        {
            Ok(()) => {}
            Err(e) if matches!(status_of(&e), Some(304 | 404)) => {}
            Err(e) => {
                return Err(RuntimeError::Stop {
                    replica: replica.clone(),
                    message: e.to_string(),
                });
            }
        }
        // The `die` event normally reports it first; `gone` reports only once.
        self.inner.gone(replica, &container, None, "stopped".into());
        self.inner.remove(&container).await;
        Ok(())
    }

    /// Stops it if it got tracked, and removes the container by name either way (a create or
    /// start that was cut short leaves one nobody tracks; a later start of the same replica, and
    /// adoption, would also remove it by name).
    async fn abandon(&self, replica: &ReplicaId) -> Result<()> {
        let stopped = self.stop(replica, Duration::ZERO).await;
        self.inner.remove(&self.container_name(replica)).await;
        stopped
    }

    async fn adopt(&self) -> Result<Vec<RunningReplica>> {
        let filters = HashMap::from([("label", vec![self.inner.own_label()])]);
        let list = self
            .inner
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| docker_err("list containers", e))?;
        let mut adopted = Vec::new();
        for c in list {
            let Some(id) = c.id else { continue };
            let Some(labels) = ReplicaLabels::parse(&c.labels.unwrap_or_default()) else {
                warn!(container = %short(&id), "container with this worker's label but bad acs labels; removing it");
                self.inner.remove(&id).await;
                continue;
            };
            let replica = labels.replica;
            let info = match self.inner.docker.inspect_container(&id, None).await {
                Ok(i) => i,
                Err(e) => {
                    warn!(replica = %replica, error = %e, "cannot inspect container; skipping");
                    continue;
                }
            };
            if info.state.as_ref().and_then(|s| s.running) != Some(true) {
                info!(replica = %replica, container = %short(&id), "forgetting a replica whose container is not running");
                self.inner.remove(&id).await;
                continue;
            }
            let (addr, health_addr) = match addresses(&self.inner.opts, &info, labels.port) {
                Ok(a) => a,
                Err(e) => {
                    warn!(replica = %replica, error = %e, "cannot tell the address of a running container; stopping it");
                    self.inner.remove(&id).await;
                    continue;
                }
            };
            if self.inner.entries.lock().unwrap().contains_key(&replica) {
                continue;
            }
            let running = RunningReplica {
                id: replica.clone(),
                service: labels.service,
                addr,
                health_addr,
                health_path: labels.health_path,
                pid: None,
                container_id: Some(id.clone()),
                started_ms: labels.started_ms,
                adopted: true,
            };
            info!(replica = %replica, container = %short(&id), addr = %running.addr, "adopting running container");
            self.inner.track(running.clone(), &id);
            adopted.push(running);
        }
        // Exits between the listing and now.
        reconcile(&self.inner).await;
        Ok(by_id(adopted))
    }

    async fn ping(&self) -> bool {
        self.inner.docker.ping().await.is_ok()
    }

    async fn list(&self) -> Vec<RunningReplica> {
        let entries = self.inner.entries.lock().unwrap();
        by_id(entries.values().map(|e| e.running.clone()).collect())
    }

    async fn stats(&self, replica: &ReplicaId) -> Option<ReplicaStats> {
        // Docker replicas are never sampled by pid: report zeros until the first stats sample.
        if !self.inner.entries.lock().unwrap().contains_key(replica) {
            return None;
        }
        Some(
            self.inner
                .stats
                .lock()
                .unwrap()
                .get(replica)
                .copied()
                .unwrap_or_default(),
        )
    }

    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<RuntimeEvent>> {
        self.events_rx.lock().unwrap().take()
    }

    async fn detach(&self) {
        self.watcher.abort();
        self.inner.forget_all();
    }
}

impl Drop for DockerRuntime {
    fn drop(&mut self) {
        self.watcher.abort();
        self.inner.forget_all();
    }
}
