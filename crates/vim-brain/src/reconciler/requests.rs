//! The requests the leader answers (`acs.cmd.scale`, `acs.cmd.maintenance`, `acs.cmd.replica`, `acs.status`,
//! `acs.sync.backends`); a standby stays silent. The answers themselves are pure (`control`):
//! each returns its reply and the events to fold in, which are folded before the reply goes.

use acs_events::{
    decode, encode, DecodeError, ScaleReply, ScaleRequest, StatusReply, StatusRequest, SyncRequest,
    SCHEMA_VERSION,
};
use async_nats::Message;
use tracing::{info, warn};

use super::Brain;
use crate::control;
use crate::world::Now;

impl Brain {
    async fn reply(&mut self, m: &Message, payload: Vec<u8>) {
        match &m.reply {
            Some(reply) => self.publish(reply.to_string(), payload).await,
            None => {
                self.reject(
                    m,
                    "no_reply",
                    "request sent without a reply subject (use request-reply)".into(),
                )
                .await
            }
        }
    }

    pub(super) async fn handle_scale(&mut self, m: &Message, now: Now) {
        if self.lease.acting().is_none() {
            return; // only the leader answers; a standby stays silent
        }
        let reply = match decode::<ScaleRequest>(&m.payload) {
            Ok(req) => {
                let (mut r, events) = control::manual_scale(&self.world, &self.services, &req, now);
                self.fold(events, now);
                if r.ok {
                    info!(service = %req.service, replicas = ?req.replicas, auto = req.auto, "manual scale");
                    let pin = self
                        .world
                        .pins()
                        .find(|(s, _)| **s == req.service)
                        .map(|(_, n)| n);
                    if let Err(e) = crate::lease::save_pin(&self.kv, &req.service, pin).await {
                        warn!(error = %e, "cannot save the manual pin in KV");
                        if let Some(note) = r.note.as_mut() {
                            note.push_str(&format!(
                                "; warning: not saved, a new leader would not know it ({e})"
                            ));
                        }
                    }
                } else {
                    self.count_refused(m, r.error.as_deref().unwrap_or_default());
                }
                r
            }
            Err(e) => {
                self.count_refused(m, &e.to_string());
                ScaleReply::error(e.to_string())
            }
        };
        self.reply(m, encode(&reply)).await;
    }

    /// `acs.cmd.maintenance`: the logic is in [`control::maintenance`]; the plan does the moves.
    pub(super) async fn handle_maintenance(&mut self, m: &Message, now: Now) {
        if self.lease.acting().is_none() {
            return; // only the leader answers; a standby stays silent
        }
        let (mut reply, events) = match decode::<acs_events::MaintenanceRequest>(&m.payload) {
            Ok(req) => control::maintenance(&self.world, &req),
            Err(e) => (
                acs_events::MaintenanceReply::error(e.to_string()),
                Vec::new(),
            ),
        };
        self.fold(events, now);
        match &reply.error {
            Some(e) => self.count_refused(m, &e.clone()),
            None => {
                info!(
                    note = reply.note.as_deref().unwrap_or_default(),
                    "maintenance"
                );
                if let Err(e) =
                    crate::lease::save_maintenance(&self.kv, self.world.maintenance()).await
                {
                    warn!(error = %e, "cannot save the maintenance state in KV");
                    let warning =
                        format!("warning: not saved, a new leader would not know it ({e})");
                    reply.note = Some(match reply.note.take() {
                        Some(n) => format!("{n}; {warning}"),
                        None => warning,
                    });
                }
            }
        }
        self.reply(m, encode(&reply)).await;
    }

    /// `acs.cmd.replica`: the checks are in [`control::replace`]; the plan does the move.
    pub(super) async fn handle_replica(&mut self, m: &Message, now: Now) {
        if self.lease.acting().is_none() {
            return; // only the leader answers; a standby stays silent
        }
        let (reply, events) = match decode::<acs_events::ReplicaRequest>(&m.payload) {
            Ok(req) => control::replace(&self.world, &self.services, &req),
            Err(e) => (acs_events::ReplicaReply::error(e.to_string()), Vec::new()),
        };
        self.fold(events, now);
        match &reply.error {
            Some(e) => self.count_refused(m, &e.clone()),
            None => info!(note = reply.note.as_deref().unwrap_or_default(), "replace"),
        }
        self.reply(m, encode(&reply)).await;
    }

    /// A request answered with an error: the reply carries the message, and we count it.
    fn count_refused(&mut self, m: &Message, error: &str) {
        self.rejected += 1;
        warn!(subject = %m.subject, %error, total = self.rejected, "refused request");
    }

    pub(super) async fn handle_status(&mut self, m: &Message, now: Now) {
        if self.lease.acting().is_none() {
            return; // only the leader answers; a standby stays silent
        }
        let answer = decode_or_default::<StatusRequest>(&m.payload)
            .map_err(|e| e.to_string())
            .and_then(|req| control::status_page(&self.world, &self.services, &req, now));
        let payload = match answer {
            Ok(reply) => {
                let brain = acs_events::BrainInfo {
                    instance: self.lease.instance.clone(),
                    term: self.world.term(),
                    leader: true,
                };
                encode(&StatusReply {
                    rejected: self.rejected,
                    brain: Some(brain),
                    ..reply
                })
            }
            Err(e) => {
                self.count_refused(m, &e.to_string());
                error_reply(&e.to_string())
            }
        };
        self.reply(m, payload).await;
    }

    pub(super) async fn handle_sync(&mut self, m: &Message, now: Now) {
        if self.lease.acting().is_none() {
            return; // only the leader answers; a standby stays silent
        }
        let payload = match decode_or_default::<SyncRequest>(&m.payload) {
            Ok(req) => {
                let sync = control::sync(&self.world, &self.services, &req, now);
                if !sync.resend.is_empty() {
                    info!(services = ?sync.resend, "sync reply carries part of these services' backends; fresh split resets follow");
                }
                let (reply, events) = sync.into_answer();
                self.fold(events, now);
                encode(&reply)
            }
            Err(e) => {
                self.count_refused(m, &e.to_string());
                error_reply(&e.to_string())
            }
        };
        self.reply(m, payload).await;
    }
}

/// Requests whose payload is optional: empty means the defaults.
fn decode_or_default<T>(payload: &[u8]) -> Result<T, DecodeError>
where
    T: serde::de::DeserializeOwned + acs_events::Validate + acs_events::codec::Versioned + Default,
{
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    decode(payload)
}

fn error_reply(error: &str) -> Vec<u8> {
    encode(&serde_json::json!({ "v": SCHEMA_VERSION, "ok": false, "error": error }))
}
