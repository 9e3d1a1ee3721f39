//! The JetStream KV bucket `acs_monitor`: saved alarms (`alarm.<rule>.<target>`), silences
//! (`silence.<rule>` for the whole rule, `silence.<rule>.<target>`) and the lease
//! (`alarm_lease`).
//!
//! The lease keeps it simple: the holder rewrites the key every tick with compare-and-set on
//! its revision; a standby that sees the revision stand still for `lease_ms` (on its own
//! monotonic clock, so no clocks are compared) takes it with compare-and-set, and a holder
//! that cannot renew for two thirds of `lease_ms` stops notifying before anyone may take over.
//! A monitor that stops cleanly marks the lease released, and a standby takes it at once.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{Operation, Store, UpdateErrorKind};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::book::{Book, Effects, Key, Silence, SilenceKey};
use super::machine::Alarm;

pub const BUCKET: &str = "acs_monitor";
pub const LEASE_KEY: &str = "alarm_lease";
const IO_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open the monitor's KV bucket {bucket:?}: {message}; alarms keep their state in JetStream: \
     run nats-server with JetStream on (`-js`)"
)]
pub struct OpenError {
    pub bucket: String,
    pub message: String,
}

/// Opens (creating if needed) the bucket. Its stream is made by hand, as the brain's: async-nats
/// 0.51's `create_key_value` cannot read nats-server 2.9's answer, while every other KV call works.
pub async fn open_bucket(
    client: &async_nats::Client,
    bucket: &str,
    replicas: usize,
) -> Result<Store, OpenError> {
    let err = |message: String| OpenError {
        bucket: bucket.to_string(),
        message,
    };
    let js = async_nats::jetstream::new(client.clone());
    let stream = async_nats::jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: replicas.max(1),
        ..Default::default()
    };
    tokio::time::timeout(Duration::from_secs(10), js.get_or_create_stream(stream))
        .await
        .map_err(|_| err("no answer from JetStream within 10 s".into()))?
        .map_err(|e| err(e.to_string()))?;
    js.get_key_value(bucket)
        .await
        .map_err(|e| err(e.to_string()))
}

pub fn alarm_key((rule, id): &Key) -> String {
    format!("alarm.{rule}.{id}")
}

pub fn silence_key((rule, id): &SilenceKey) -> String {
    match id {
        Some(id) => format!("silence.{rule}.{id}"),
        None => format!("silence.{rule}"),
    }
}

async fn bounded<T, E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(IO_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer from JetStream within {IO_TIMEOUT:?}")),
    }
}

/// Writes what a tick or request changed; returns the (key, error) of each failed write.
pub async fn save(kv: &Store, fx: &Effects) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    for (k, a) in &fx.alarms {
        let key = alarm_key(k);
        let res = match a {
            Some(a) => {
                bounded(kv.put(&key, Bytes::from(serde_json::to_vec(a).unwrap_or_default())))
                    .await
                    .map(|_| ())
            }
            None => bounded(kv.delete(&key)).await,
        };
        if let Err(e) = res {
            errors.push((key, e));
        }
    }
    for (k, s) in &fx.silences {
        let key = silence_key(k);
        let res = match s {
            Some(s) => {
                bounded(kv.put(&key, Bytes::from(serde_json::to_vec(s).unwrap_or_default())))
                    .await
                    .map(|_| ())
            }
            None => bounded(kv.delete(&key)).await,
        };
        if let Err(e) = res {
            errors.push((key, e));
        }
    }
    errors
}

/// What a new lease holder reads. Unreadable values are reported as (key, why) and left out.
pub async fn load(kv: &Store) -> Result<(Book, Vec<(String, String)>), String> {
    let mut keys = bounded(kv.keys()).await?;
    let mut names = Vec::new();
    loop {
        match tokio::time::timeout(IO_TIMEOUT, keys.next()).await {
            Ok(Some(Ok(k))) => names.push(k),
            Ok(Some(Err(e))) => return Err(format!("listing the keys: {e}")),
            Ok(None) => break,
            Err(_) => return Err("listing the keys: no answer within 2 s".into()),
        }
    }
    let mut book = Book::default();
    let mut errors = Vec::new();
    for name in names {
        let parts: Vec<&str> = name.split('.').collect();
        let value = match parts[..] {
            ["alarm", _, _] | ["silence", _] | ["silence", _, _] => {
                match bounded(kv.get(&name)).await {
                    Ok(Some(v)) => v,
                    Ok(None) => continue,
                    Err(e) => {
                        errors.push((name, e));
                        continue;
                    }
                }
            }
            _ => continue,
        };
        let res = match parts[..] {
            ["alarm", rule, id] => serde_json::from_slice::<Alarm>(&value).map(|a| {
                book.alarms.insert((rule.to_string(), id.to_string()), a);
            }),
            ["silence", rule, ..] => serde_json::from_slice::<Silence>(&value).map(|s| {
                book.silences
                    .insert((rule.to_string(), parts.get(2).map(|id| id.to_string())), s);
            }),
            _ => Ok(()),
        };
        if let Err(e) = res {
            errors.push((name, e.to_string()));
        }
    }
    Ok((book, errors))
}

#[derive(Debug, Serialize, Deserialize)]
struct LeaseValue {
    holder: String,
    #[serde(default)]
    released: bool,
}

#[derive(Debug)]
enum LeaseState {
    Standby { seen: Option<(u64, Instant)> },
    Holding { revision: u64, renewed: Instant },
}

/// One monitor's part in the lease.
pub struct Lease {
    kv: Store,
    instance: String,
    lease_ms: u64,
    state: LeaseState,
}

impl Lease {
    pub fn new(kv: Store, instance: String, lease_ms: u64) -> Self {
        Lease {
            kv,
            instance,
            lease_ms,
            state: LeaseState::Standby { seen: None },
        }
    }

    pub fn holding(&self) -> bool {
        matches!(self.state, LeaseState::Holding { .. })
    }

    fn value(&self, released: bool) -> Bytes {
        Bytes::from(
            serde_json::to_vec(&LeaseValue {
                holder: self.instance.clone(),
                released,
            })
            .unwrap_or_default(),
        )
    }

    /// One turn: renew, or look and maybe take. Returns whether this monitor holds the lease.
    pub async fn turn(&mut self) -> bool {
        let lease = Duration::from_millis(self.lease_ms);
        match self.state {
            LeaseState::Holding { revision, renewed } => {
                match tokio::time::timeout(
                    lease / 3,
                    self.kv.update(LEASE_KEY, self.value(false), revision),
                )
                .await
                {
                    Ok(Ok(rev)) => {
                        self.state = LeaseState::Holding {
                            revision: rev,
                            renewed: Instant::now(),
                        }
                    }
                    Ok(Err(e)) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                        tracing::warn!(instance = %self.instance, "another monitor took the alarm lease");
                        self.state = LeaseState::Standby { seen: None };
                    }
                    res => {
                        let error = res.map_or_else(
                            |_| "timed out".to_string(),
                            |r| r.err().map(|e| e.to_string()).unwrap_or_default(),
                        );
                        if renewed.elapsed() >= lease * 2 / 3 {
                            tracing::warn!(%error, "cannot renew the alarm lease: standing down");
                            self.state = LeaseState::Standby { seen: None };
                        } else {
                            tracing::warn!(%error, "alarm lease renewal failed; retrying");
                        }
                    }
                }
            }
            LeaseState::Standby { seen } => {
                let entry = match bounded(self.kv.entry(LEASE_KEY)).await {
                    Ok(e) => e,
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the alarm lease");
                        return false;
                    }
                };
                let take = match &entry {
                    None => Some(None),
                    Some(e) if e.operation != Operation::Put => Some(Some(e.revision)),
                    Some(e) => {
                        let released = serde_json::from_slice::<LeaseValue>(&e.value)
                            .is_ok_and(|v| v.released);
                        match seen {
                            _ if released => Some(Some(e.revision)),
                            Some((rev, at)) if rev == e.revision && at.elapsed() >= lease => {
                                Some(Some(e.revision))
                            }
                            Some((rev, _)) if rev == e.revision => None,
                            _ => {
                                self.state = LeaseState::Standby {
                                    seen: Some((e.revision, Instant::now())),
                                };
                                None
                            }
                        }
                    }
                };
                let won = match take {
                    None => None,
                    Some(None) => bounded(self.kv.create(LEASE_KEY, self.value(false)))
                        .await
                        .ok(),
                    Some(Some(rev)) => bounded(self.kv.update(LEASE_KEY, self.value(false), rev))
                        .await
                        .ok(),
                };
                if let Some(revision) = won {
                    tracing::info!(instance = %self.instance, "took the alarm lease: this monitor evaluates and notifies");
                    self.state = LeaseState::Holding {
                        revision,
                        renewed: Instant::now(),
                    };
                }
            }
        }
        self.holding()
    }

    /// Marks the lease released so a standby takes over at once.
    pub async fn release(&mut self) {
        if let LeaseState::Holding { revision, .. } = self.state {
            match bounded(self.kv.update(LEASE_KEY, self.value(true), revision)).await {
                Ok(_) => tracing::info!("alarm lease released"),
                Err(error) => {
                    tracing::warn!(%error, "could not release the alarm lease; it expires")
                }
            }
            self.state = LeaseState::Standby { seen: None };
        }
    }
}
