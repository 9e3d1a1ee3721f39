//! The container a replica runs in, as plain data: [`container_body`] turns a spec into the body
//! of `docker create` (image, command, environment, labels, limits, hardening, ports, network);
//! [`addresses`] reads where it can be reached from its inspection, and [`ReplicaLabels::parse`]
//! reads its labels back when a restarted worker adopts it. All pure; the Docker calls are in
//! the parent module.

use std::collections::HashMap;
use std::net::IpAddr;

use acs_events::{ReplicaId, ReplicaSpec, ServiceName, UnixMs};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HostConfig, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
};

use super::DockerOptions;
use crate::config::Advertise;
use crate::runtime::{Result, RuntimeError};
use crate::spec::{replica_env, substitute};

pub const LABEL_WORKER: &str = "acs.worker";
pub const LABEL_SERVICE: &str = "acs.service";
pub const LABEL_REPLICA: &str = "acs.replica";
pub const LABEL_PORT: &str = "acs.port";
pub const LABEL_HEALTH: &str = "acs.health_path";
pub const LABEL_STARTED: &str = "acs.started_ms";

/// The `docker create` body for `replica` started at `started_ms`. Refuses a spec without an
/// image or without `spec.port` (the port it listens on inside the container).
pub fn container_body(
    opts: &DockerOptions,
    replica: &ReplicaId,
    spec: &ReplicaSpec,
    started_ms: UnixMs,
) -> Result<ContainerCreateBody> {
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
    let port_key = format!("{}/tcp", spec.port);
    let labels = HashMap::from([
        (LABEL_WORKER.to_string(), opts.worker.to_string()),
        (LABEL_SERVICE.to_string(), spec.service.to_string()),
        (LABEL_REPLICA.to_string(), replica.to_string()),
        (LABEL_PORT.to_string(), spec.port.to_string()),
        (LABEL_HEALTH.to_string(), spec.health_path.clone()),
        (LABEL_STARTED.to_string(), started_ms.to_string()),
    ]);
    let env = replica_env(&spec.env, spec.port, replica)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let host_config = HostConfig {
        nano_cpus: spec.cpus.map(|c| (c * 1e9).round() as i64),
        memory: spec
            .memory_mb
            .map(|mb| (mb as i64).saturating_mul(1024 * 1024)),
        // No restart policy: the brain replaces replicas that die.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        network_mode: opts.network.clone(),
        // An empty host port lets Docker pick a free one.
        port_bindings: (opts.advertise == Advertise::HostPort).then(|| {
            HashMap::from([(
                port_key.clone(),
                Some(vec![PortBinding {
                    host_ip: bind_ip(opts).map(|ip| ip.to_string()),
                    host_port: Some(String::new()),
                }]),
            )])
        }),
        security_opt: Some(vec!["no-new-privileges".into()]),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: (!opts.caps.is_empty()).then(|| opts.caps.clone()),
        pids_limit: (opts.pids_limit > 0).then_some(i64::from(opts.pids_limit)),
        ..Default::default()
    };
    let networking_config = opts.network.as_ref().map(|n| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(n.clone(), EndpointSettings::default())])),
    });
    Ok(ContainerCreateBody {
        image: Some(image),
        cmd: (!spec.command.is_empty()).then(|| substitute(&spec.command, spec.port, replica)),
        env: Some(env),
        labels: Some(labels),
        exposed_ports: Some(vec![port_key]),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    })
}

/// The host address published ports are bound to: the advertise host when it is a specific IP,
/// else `None` (all addresses).
fn bind_ip(opts: &DockerOptions) -> Option<IpAddr> {
    opts.advertise_host
        .parse::<IpAddr>()
        .ok()
        .filter(|ip| !ip.is_unspecified())
}

/// Advertised address and health-check address of a running container (from its inspection),
/// by the runtime's [`Advertise`] mode.
pub fn addresses(
    opts: &DockerOptions,
    info: &ContainerInspectResponse,
    port: u16,
) -> std::result::Result<(String, String), String> {
    let net = info
        .network_settings
        .as_ref()
        .ok_or("no network settings")?;
    match opts.advertise {
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
            // Health-checked where the port is bound: the advertise IP, or loopback.
            let health_ip = bind_ip(opts).map_or("127.0.0.1".to_string(), |ip| ip.to_string());
            Ok((
                format!("{}:{host_port}", opts.advertise_host),
                format!("{health_ip}:{host_port}"),
            ))
        }
        Advertise::ContainerIp => {
            let networks = net.networks.as_ref().ok_or("container has no network")?;
            let ep = match &opts.network {
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

/// What the acs labels of a container say about the replica in it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaLabels {
    pub replica: ReplicaId,
    pub service: ServiceName,
    /// The container port it listens on.
    pub port: u16,
    pub health_path: String,
    pub started_ms: UnixMs,
}

impl ReplicaLabels {
    /// `None` when the replica, service or port label is missing or invalid; a missing health
    /// path is `/healthz`, a missing start time 0.
    pub fn parse(labels: &HashMap<String, String>) -> Option<Self> {
        Some(Self {
            replica: ReplicaId::new(labels.get(LABEL_REPLICA)?.as_str()).ok()?,
            service: ServiceName::new(labels.get(LABEL_SERVICE)?.as_str()).ok()?,
            port: labels.get(LABEL_PORT)?.parse::<u16>().ok()?,
            health_path: labels
                .get(LABEL_HEALTH)
                .cloned()
                .unwrap_or_else(|| "/healthz".into()),
            started_ms: labels
                .get(LABEL_STARTED)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acs_events::WorkerId;
    use bollard::models::NetworkSettings;

    fn opts(advertise: Advertise, network: Option<&str>) -> DockerOptions {
        DockerOptions {
            worker: WorkerId::new("w1").unwrap(),
            advertise,
            advertise_host: "10.0.0.1".into(),
            network: network.map(str::to_string),
            caps: vec![],
            pids_limit: 256,
        }
    }

    fn spec(v: serde_json::Value) -> ReplicaSpec {
        serde_json::from_value(v).unwrap()
    }

    fn rid(s: &str) -> ReplicaId {
        ReplicaId::new(s).unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn host_port_body_publishes_the_port_and_sets_limits_env_and_labels() {
        let spec = spec(serde_json::json!({
            "service": "web", "image": "acs-demo:1", "port": 8080, "health_path": "/up",
            "env": {"B": "2", "A": "1", "PORT": "1", "ACS_REPLICA": "x"},
            "cpus": 0.5, "memory_mb": 64
        }));
        let body = container_body(&opts(Advertise::HostPort, None), &rid("r1"), &spec, 42).unwrap();
        let labels = HashMap::from([
            ("acs.worker".to_string(), "w1".to_string()),
            ("acs.service".to_string(), "web".to_string()),
            ("acs.replica".to_string(), "r1".to_string()),
            ("acs.port".to_string(), "8080".to_string()),
            ("acs.health_path".to_string(), "/up".to_string()),
            ("acs.started_ms".to_string(), "42".to_string()),
        ]);
        let want = ContainerCreateBody {
            image: Some("acs-demo:1".into()),
            cmd: None,
            env: Some(strings(&["A=1", "B=2", "PORT=8080", "ACS_REPLICA=r1"])),
            labels: Some(labels),
            exposed_ports: Some(strings(&["8080/tcp"])),
            host_config: Some(HostConfig {
                nano_cpus: Some(500_000_000),
                memory: Some(64 << 20),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: None,
                }),
                network_mode: None,
                port_bindings: Some(HashMap::from([(
                    "8080/tcp".to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some("10.0.0.1".into()),
                        host_port: Some(String::new()),
                    }]),
                )])),
                security_opt: Some(strings(&["no-new-privileges"])),
                cap_drop: Some(strings(&["ALL"])),
                cap_add: None,
                pids_limit: Some(256),
                ..Default::default()
            }),
            networking_config: None,
            ..Default::default()
        };
        assert_eq!(body, want);
    }

    #[test]
    fn container_ip_body_joins_the_network_without_publishing() {
        let spec = spec(serde_json::json!({
            "service": "web", "image": "acs-demo:1", "port": 80,
            "command": ["demo-web", "--port", "{port}", "--name", "{replica}"]
        }));
        let o = opts(Advertise::ContainerIp, Some("acs-net"));
        let body = container_body(&o, &rid("r2"), &spec, 7).unwrap();
        assert_eq!(
            body.cmd,
            Some(strings(&["demo-web", "--port", "80", "--name", "r2"]))
        );
        assert_eq!(body.exposed_ports, Some(strings(&["80/tcp"])));
        let host = body.host_config.unwrap();
        assert_eq!(host.port_bindings, None);
        assert_eq!(host.network_mode.as_deref(), Some("acs-net"));
        assert_eq!((host.nano_cpus, host.memory), (None, None));
        assert_eq!(
            body.networking_config,
            Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    "acs-net".to_string(),
                    EndpointSettings::default()
                )])),
            })
        );
        assert_eq!(body.env, Some(strings(&["PORT=80", "ACS_REPLICA=r2"])));
    }

    #[test]
    fn containers_keep_only_the_allowed_caps_and_bind_the_advertise_ip() {
        let spec = spec(serde_json::json!({"service": "web", "image": "i", "port": 80}));
        let mut o = opts(Advertise::HostPort, None);
        o.caps = strings(&["NET_BIND_SERVICE"]);
        o.pids_limit = 0;
        o.advertise_host = "worker1.example".into();
        let host = container_body(&o, &rid("r1"), &spec, 1)
            .unwrap()
            .host_config
            .unwrap();
        assert_eq!(host.cap_drop, Some(strings(&["ALL"])));
        assert_eq!(host.cap_add, Some(strings(&["NET_BIND_SERVICE"])));
        assert_eq!(host.security_opt, Some(strings(&["no-new-privileges"])));
        assert_eq!(host.pids_limit, None, "0 = no pids limit");
        let binding = &host.port_bindings.unwrap()["80/tcp"].clone().unwrap()[0];
        assert_eq!(binding.host_ip, None, "a host name binds all addresses");
        o.advertise_host = "127.0.0.1".into();
        let host = container_body(&o, &rid("r1"), &spec, 1)
            .unwrap()
            .host_config
            .unwrap();
        let binding = &host.port_bindings.unwrap()["80/tcp"].clone().unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn refuses_a_spec_without_image_or_port() {
        let o = opts(Advertise::HostPort, None);
        let cases = [
            (
                serde_json::json!({"service": "web", "command": ["x"], "port": 80}),
                "has no image",
            ),
            (
                serde_json::json!({"service": "web", "image": "", "port": 80}),
                "has no image",
            ),
            (
                serde_json::json!({"service": "web", "image": "nginx"}),
                "spec.port",
            ),
        ];
        for (v, want) in cases {
            let err = container_body(&o, &rid("r1"), &spec(v.clone()), 1).unwrap_err();
            assert!(matches!(err, RuntimeError::InvalidSpec(_)), "{v}: {err}");
            assert!(err.to_string().contains(want), "{v}: {err}");
        }
    }

    fn inspected(ports: &[(&str, &str)], networks: &[(&str, &str)]) -> ContainerInspectResponse {
        let binding = |hp: &str| {
            Some(vec![PortBinding {
                host_ip: Some("0.0.0.0".into()),
                host_port: Some(hp.into()),
            }])
        };
        let endpoint = |ip: &str| EndpointSettings {
            ip_address: Some(ip.into()),
            ..Default::default()
        };
        ContainerInspectResponse {
            network_settings: Some(NetworkSettings {
                ports: Some(
                    ports
                        .iter()
                        .map(|(k, hp)| (k.to_string(), binding(hp)))
                        .collect(),
                ),
                networks: Some(
                    networks
                        .iter()
                        .map(|(n, ip)| (n.to_string(), endpoint(ip)))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn host_port_addresses_use_the_published_port() {
        let o = opts(Advertise::HostPort, None);
        let info = inspected(&[("8080/tcp", "49153")], &[("bridge", "172.17.0.2")]);
        assert_eq!(
            addresses(&o, &info, 8080),
            Ok(("10.0.0.1:49153".into(), "10.0.0.1:49153".into()))
        );
        // A host name (or 0.0.0.0) binds all addresses and is health-checked on loopback.
        for host in ["worker1.example", "0.0.0.0"] {
            let o = DockerOptions {
                advertise_host: host.into(),
                ..o.clone()
            };
            assert_eq!(
                addresses(&o, &info, 8080),
                Ok((format!("{host}:49153"), "127.0.0.1:49153".into()))
            );
        }
        let err = addresses(&o, &info, 9090).unwrap_err();
        assert!(err.contains("9090/tcp is not published"), "{err}");
        let err = addresses(&o, &ContainerInspectResponse::default(), 8080).unwrap_err();
        assert_eq!(err, "no network settings");
    }

    #[test]
    fn container_ip_addresses_use_the_ip_on_the_network() {
        let info = inspected(&[], &[("bridge", "172.17.0.2"), ("acs-net", "172.30.0.5")]);
        let own = opts(Advertise::ContainerIp, Some("acs-net"));
        let want = "172.30.0.5:80".to_string();
        assert_eq!(addresses(&own, &info, 80), Ok((want.clone(), want)));
        let default = opts(Advertise::ContainerIp, None);
        let want = "172.17.0.2:80".to_string();
        assert_eq!(addresses(&default, &info, 80), Ok((want.clone(), want)));
        let other = opts(Advertise::ContainerIp, Some("elsewhere"));
        let err = addresses(&other, &info, 80).unwrap_err();
        assert!(err.contains("no IP address"), "{err}");
        let no_ip = inspected(&[], &[("acs-net", "")]);
        assert!(addresses(&own, &no_ip, 80).is_err());
    }

    #[test]
    fn labels_read_back_what_the_body_wrote() {
        let spec = spec(serde_json::json!({"service": "web", "image": "i", "port": 8080}));
        let body = container_body(&opts(Advertise::HostPort, None), &rid("r1"), &spec, 42).unwrap();
        let mut labels = body.labels.unwrap();
        assert_eq!(
            ReplicaLabels::parse(&labels),
            Some(ReplicaLabels {
                replica: rid("r1"),
                service: ServiceName::new("web").unwrap(),
                port: 8080,
                health_path: "/healthz".into(),
                started_ms: 42,
            })
        );
        labels.remove(LABEL_HEALTH);
        labels.remove(LABEL_STARTED);
        let parsed = ReplicaLabels::parse(&labels).unwrap();
        assert_eq!(
            (parsed.health_path.as_str(), parsed.started_ms),
            ("/healthz", 0)
        );
        labels.insert(LABEL_PORT.into(), "http".into());
        assert_eq!(ReplicaLabels::parse(&labels), None);
        labels.insert(LABEL_PORT.into(), "8080".into());
        labels.insert(LABEL_REPLICA.into(), "a.b".into());
        assert_eq!(ReplicaLabels::parse(&labels), None);
    }
}
