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
//! - Addresses ([`Advertise`]): either the container port is published on a free host port and
//!   advertised as `<advertise_host>:<host port>` (health-checked on `127.0.0.1`), or the
//!   container's IP on its network is advertised as `<ip>:<port>`.
//! - Exits come from the Docker event stream (`die` events of this worker's containers); the
//!   dead container is removed. The stream is re-opened after errors, and a reconciliation
//!   against `docker ps` catches exits missed meanwhile.
//! - CPU and memory per replica come from a `docker stats` stream per container.
//! - Stop: `docker stop -t <grace>` (SIGTERM, SIGKILL after the grace period), then remove.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acs_events::{ReplicaId, ReplicaSpec, RuntimeKind, ServiceName, WorkerId};
use async_trait::async_trait;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStatsResponse, EndpointSettings,
    HostConfig, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use super::process::{now_ms, substitute};
use super::{ReplicaStats, Result, RunningReplica, Runtime, RuntimeError, RuntimeEvent};
use crate::config::Advertise;

pub const LABEL_WORKER: &str = "acs.worker";
pub const LABEL_SERVICE: &str = "acs.service";
pub const LABEL_REPLICA: &str = "acs.replica";
pub const LABEL_PORT: &str = "acs.port";
pub const LABEL_HEALTH: &str = "acs.health_path";
pub const LABEL_STARTED: &str = "acs.started_ms";

#[derive(Debug, Clone)]
pub struct DockerOptions {
    pub worker: WorkerId,
    pub advertise: Advertise,
    pub advertise_host: String,
    /// Network the containers join; `None` = Docker's default bridge.
    pub network: Option<String>,
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

    /// Advertised address and health-check address of a running container.
    fn addresses(
        &self,
        info: &ContainerInspectResponse,
        port: u16,
    ) -> std::result::Result<(String, String), String> {
        let net = info
            .network_settings
            .as_ref()
            .ok_or("no network settings")?;
        match self.opts.advertise {
            Advertise::HostPort => {
                let key = format!("{port}/tcp");
                let host_port = net
                    .ports
                    .as_ref()
                    .and_then(|p| p.get(&key))
                    .and_then(|b| b.as_ref())
                    .and_then(|b| {
                        b.iter()
                            .find_map(|b| b.host_port.as_deref()?.parse::<u16>().ok())
                    })
                    .ok_or_else(|| format!("container port {key} is not published on the host"))?;
                Ok((
                    format!("{}:{host_port}", self.opts.advertise_host),
                    format!("127.0.0.1:{host_port}"),
                ))
            }
            Advertise::ContainerIp => {
                let networks = net.networks.as_ref().ok_or("container has no network")?;
                let ep = match &self.opts.network {
                    Some(n) => networks.get(n),
                    None => networks.get("bridge").or_else(|| networks.values().next()),
                };
                let ip = ep
                    .and_then(|e| e.ip_address.clone())
                    .filter(|ip| !ip.is_empty())
                    .ok_or("container has no IP address on its network")?;
                let addr = format!("{ip}:{port}");
                Ok((addr.clone(), addr))
            }
        }
    }

    fn start_stats(self: &Arc<Self>, replica: &ReplicaId, container: &str) -> AbortHandle {
        let this = self.clone();
        let (replica, container) = (replica.clone(), container.to_string());
        tokio::spawn(async move {
            let opts = StatsOptionsBuilder::default()
                .stream(true)
                .one_shot(false)
                .build();
            let mut stream = this.docker.stats(&container, Some(opts));
            while let Some(item) = stream.next().await {
                match item {
                    Ok(s) => {
                        if let Some(st) = stats_of(&s) {
                            this.stats.lock().unwrap().insert(replica.clone(), st);
                        }
                    }
                    Err(e) => {
                        debug!(replica = %replica, error = %e, "stats stream ended");
                        break;
                    }
                }
            }
        })
        .abort_handle()
    }
}

/// CPU (percent of one core) and memory (without page cache) from one `docker stats` sample.
pub fn stats_of(s: &ContainerStatsResponse) -> Option<ReplicaStats> {
    let cpu = s.cpu_stats.as_ref()?;
    let pre = s.precpu_stats.as_ref();
    let total = cpu
        .cpu_usage
        .as_ref()
        .and_then(|u| u.total_usage)
        .unwrap_or(0);
    let pre_total = pre
        .and_then(|p| p.cpu_usage.as_ref())
        .and_then(|u| u.total_usage)
        .unwrap_or(0);
    let system = cpu.system_cpu_usage.unwrap_or(0);
    let pre_system = pre.and_then(|p| p.system_cpu_usage).unwrap_or(0);
    let online = cpu.online_cpus.filter(|n| *n > 0).unwrap_or(1) as f64;
    let cpu_pct = if system > pre_system && total >= pre_total && pre_system > 0 {
        (total - pre_total) as f64 / (system - pre_system) as f64 * online * 100.0
    } else {
        0.0
    };
    let mem = s.memory_stats.as_ref();
    let usage = mem.and_then(|m| m.usage).unwrap_or(0);
    let cache = mem
        .and_then(|m| m.stats.as_ref())
        .and_then(|st| {
            st.get("inactive_file")
                .or_else(|| st.get("total_inactive_file"))
                .copied()
        })
        .unwrap_or(0);
    Some(ReplicaStats {
        cpu_pct: if cpu_pct.is_finite() && cpu_pct >= 0.0 {
            cpu_pct
        } else {
            0.0
        },
        mem_bytes: usage.saturating_sub(cache),
    })
}

/// Follows `die` events of this worker's containers; re-opens the stream after errors and
/// reconciles with `docker ps` each time it (re)opens.
async fn watch_events(inner: Arc<Inner>) {
    let mut filters: HashMap<&str, Vec<String>> = HashMap::new();
    filters.insert("type", vec!["container".into()]);
    filters.insert("event", vec!["die".into()]);
    filters.insert(
        "label",
        vec![format!("{LABEL_WORKER}={}", inner.opts.worker)],
    );
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
                    let reason = match code {
                        Some(c) => format!("exited with status {c}"),
                        None => "exited".to_string(),
                    };
                    inner.gone(&replica, &id, code, reason);
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
async fn reconcile(inner: &Arc<Inner>) {
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
                    let reason = code
                        .map(|c| format!("exited with status {c}"))
                        .unwrap_or_else(|| "exited".into());
                    inner.gone(&replica, &container, code, reason);
                }
            }
            Err(e) if status_of(&e) == Some(404) => {
                inner.gone(&replica, &container, None, "container disappeared".into());
            }
            Err(e) => debug!(replica = %replica, error = %e, "cannot inspect container"),
        }
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
        let start_err = |message: String| RuntimeError::Start {
            replica: replica.clone(),
            message,
        };
        let image = spec.image.clone().filter(|i| !i.is_empty()).ok_or_else(|| {
            RuntimeError::InvalidSpec(format!(
                "service {} has no image; the Docker runtime runs spec.image (a command alone needs --runtime process)",
                spec.service
            ))
        })?;
        if spec.port == 0 {
            return Err(RuntimeError::InvalidSpec(format!(
                "service {}: spec.port (the port it listens on inside the container) must be set for the Docker runtime",
                spec.service
            )));
        }
        if self.inner.entries.lock().unwrap().contains_key(replica) {
            return Err(start_err("it is already running".into()));
        }
        let o = &self.inner.opts;
        let name = self.container_name(replica);
        // A leftover container with the same name (e.g. exited before a crash) would block create.
        self.inner.remove(&name).await;

        let started_ms = now_ms();
        let port_key = format!("{}/tcp", spec.port);
        let labels = HashMap::from([
            (LABEL_WORKER.to_string(), o.worker.to_string()),
            (LABEL_SERVICE.to_string(), spec.service.to_string()),
            (LABEL_REPLICA.to_string(), replica.to_string()),
            (LABEL_PORT.to_string(), spec.port.to_string()),
            (LABEL_HEALTH.to_string(), spec.health_path.clone()),
            (LABEL_STARTED.to_string(), started_ms.to_string()),
        ]);
        let mut env: Vec<String> = spec
            .env
            .iter()
            .filter(|(k, _)| k.as_str() != "PORT" && k.as_str() != "ACS_REPLICA")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.push(format!("PORT={}", spec.port));
        env.push(format!("ACS_REPLICA={replica}"));
        let host_config = HostConfig {
            nano_cpus: spec.cpus.map(|c| (c * 1e9).round() as i64),
            memory: spec
                .memory_mb
                .map(|mb| (mb as i64).saturating_mul(1024 * 1024)),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            network_mode: o.network.clone(),
            port_bindings: (o.advertise == Advertise::HostPort).then(|| {
                HashMap::from([(
                    port_key.clone(),
                    Some(vec![PortBinding {
                        host_ip: None,
                        host_port: Some(String::new()),
                    }]),
                )])
            }),
            ..Default::default()
        };
        let networking_config = o.network.as_ref().map(|n| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(n.clone(), EndpointSettings::default())])),
        });
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            cmd: (!spec.command.is_empty()).then(|| substitute(&spec.command, spec.port, replica)),
            env: Some(env),
            labels: Some(labels),
            exposed_ports: Some(vec![port_key]),
            host_config: Some(host_config),
            networking_config,
            ..Default::default()
        };
        let created = self
            .inner
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await
            .map_err(|e| match status_of(&e) {
                Some(404) => start_err(format!(
                    "image {image:?} not found locally (nothing is pulled): {e}"
                )),
                _ => start_err(format!("create container: {e}")),
            })?;
        let id = created.id;
        let fail = |message: String| {
            let inner = self.inner.clone();
            let id = id.clone();
            async move {
                inner.remove(&id).await;
                RuntimeError::Start {
                    replica: replica.clone(),
                    message,
                }
            }
        };
        if let Err(e) = self.inner.docker.start_container(&id, None).await {
            return Err(fail(format!("start container: {e}")).await);
        }
        let info = match self.inner.docker.inspect_container(&id, None).await {
            Ok(i) => i,
            Err(e) => return Err(fail(format!("inspect container: {e}")).await),
        };
        let (addr, health_addr) = match self.inner.addresses(&info, spec.port) {
            Ok(a) => a,
            Err(e) => return Err(fail(e).await),
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
        let stats_task = Some(self.inner.start_stats(replica, &id));
        self.inner.entries.lock().unwrap().insert(
            replica.clone(),
            Entry {
                running: running.clone(),
                container: id.clone(),
                stats_task,
            },
        );
        info!(replica = %replica, service = %spec.service, container = %short(&id), %image, addr = %running.addr, "replica container started");
        // It may have died between `start` and now, before it was tracked.
        if info.state.and_then(|s| s.running) != Some(true) {
            reconcile(&self.inner).await;
        }
        Ok(running)
    }

    async fn stop(&self, replica: &ReplicaId, grace: Duration) -> Result<()> {
        let Some(container) = self
            .inner
            .entries
            .lock()
            .unwrap()
            .get(replica)
            .map(|e| e.container.clone())
        else {
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

    async fn adopt(&self) -> Result<Vec<RunningReplica>> {
        let mut filters: HashMap<&str, Vec<String>> = HashMap::new();
        filters.insert(
            "label",
            vec![format!("{LABEL_WORKER}={}", self.inner.opts.worker)],
        );
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
            let labels = c.labels.unwrap_or_default();
            let parsed = (|| {
                let replica = ReplicaId::new(labels.get(LABEL_REPLICA)?.as_str()).ok()?;
                let service = ServiceName::new(labels.get(LABEL_SERVICE)?.as_str()).ok()?;
                let port = labels.get(LABEL_PORT)?.parse::<u16>().ok()?;
                let health = labels
                    .get(LABEL_HEALTH)
                    .cloned()
                    .unwrap_or_else(|| "/healthz".into());
                let started = labels
                    .get(LABEL_STARTED)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                Some((replica, service, port, health, started))
            })();
            let Some((replica, service, port, health_path, started_ms)) = parsed else {
                warn!(container = %short(&id), "container with this worker's label but bad acs labels; removing it");
                self.inner.remove(&id).await;
                continue;
            };
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
            let (addr, health_addr) = match self.inner.addresses(&info, port) {
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
                service,
                addr,
                health_addr,
                health_path,
                pid: None,
                container_id: Some(id.clone()),
                started_ms,
                adopted: true,
            };
            info!(replica = %replica, container = %short(&id), addr = %running.addr, "adopting running container");
            let stats_task = Some(self.inner.start_stats(&replica, &id));
            self.inner.entries.lock().unwrap().insert(
                replica,
                Entry {
                    running: running.clone(),
                    container: id,
                    stats_task,
                },
            );
            adopted.push(running);
        }
        adopted.sort_by(|a, b| a.id.cmp(&b.id));
        // Exits between the listing and now.
        reconcile(&self.inner).await;
        Ok(adopted)
    }

    async fn list(&self) -> Vec<RunningReplica> {
        let mut v: Vec<_> = self
            .inner
            .entries
            .lock()
            .unwrap()
            .values()
            .map(|e| e.running.clone())
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
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
        for (_, e) in self.inner.entries.lock().unwrap().drain() {
            if let Some(t) = e.stats_task {
                t.abort();
            }
        }
    }
}

impl Drop for DockerRuntime {
    fn drop(&mut self) {
        self.watcher.abort();
        if let Ok(mut entries) = self.inner.entries.lock() {
            for (_, e) in entries.drain() {
                if let Some(t) = e.stats_task {
                    t.abort();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats};

    fn sample(
        total: u64,
        pre_total: u64,
        sys: u64,
        pre_sys: u64,
        cpus: u32,
        usage: u64,
        cache: u64,
    ) -> ContainerStatsResponse {
        ContainerStatsResponse {
            cpu_stats: Some(ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage {
                    total_usage: Some(total),
                    ..Default::default()
                }),
                system_cpu_usage: Some(sys),
                online_cpus: Some(cpus),
                ..Default::default()
            }),
            precpu_stats: Some(ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage {
                    total_usage: Some(pre_total),
                    ..Default::default()
                }),
                system_cpu_usage: Some(pre_sys),
                ..Default::default()
            }),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(usage),
                stats: Some(HashMap::from([("inactive_file".to_string(), cache)])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cpu_is_percent_of_one_core() {
        // Half of the whole 2-core machine = one core = 100 %.
        let s = stats_of(&sample(1_500, 1_000, 2_000, 1_000, 2, 100 << 20, 10 << 20)).unwrap();
        assert!((s.cpu_pct - 100.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.mem_bytes, 90 << 20);
        // First sample (no previous system time): 0, not garbage.
        let s = stats_of(&sample(1_500, 0, 2_000, 0, 2, 1, 0)).unwrap();
        assert_eq!(s.cpu_pct, 0.0);
    }
}
