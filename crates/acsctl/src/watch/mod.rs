//! `acsctl watch`: one readable line per NATS message, a readable `nats sub 'acs.>'`.
//!
//! [`describe`] is pure: it decodes the payload with the `acs-events` type that belongs to the
//! subject and summarises it; anything it cannot decode is shown as raw text with the reason.
//!
//! Files: this one holds the subscription loop; `describe.rs` the dispatch by subject and the
//! raw-text fallback; `lines.rs` one formatter per message type; `tests.rs` their tests.

mod describe;
mod lines;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::io::Write as _;

use acs_events::Subjects;
use futures::StreamExt;

use crate::error::{Error, Result};

pub use describe::{describe, raw_text};

#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub subject: String,
    /// Print `{"subject":..,"payload":..}` lines instead of descriptions.
    pub json: bool,
    /// Skip `metrics.*` subjects.
    pub no_metrics: bool,
}

/// Subscribes and prints until `shutdown` resolves.
pub async fn run(
    nc: &async_nats::Client,
    subjects: &Subjects,
    opts: &WatchOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let mut sub = nc
        .subscribe(opts.subject.clone())
        .await
        .map_err(|e| Error::Subscribe {
            subject: opts.subject.clone(),
            reason: e.to_string(),
        })?;
    eprintln!("-- watching {} (Ctrl-C to stop)", opts.subject);
    if nc.connection_state() != async_nats::connection::State::Connected {
        eprintln!("-- NATS is not reachable yet; retrying in the background");
    }
    tokio::pin!(shutdown);
    let stdout = std::io::stdout();
    loop {
        let msg = tokio::select! {
            _ = &mut shutdown => break,
            msg = sub.next() => match msg {
                Some(m) => m,
                None => break,
            },
        };
        let subject = msg.subject.as_str();
        if opts.no_metrics && is_metrics(subjects, subject) {
            continue;
        }
        let line = if opts.json {
            json_line(subject, &msg.payload)
        } else {
            format!(
                "{} {}",
                timestamp(),
                describe(subjects, subject, &msg.payload)
            )
        };
        let mut out = stdout.lock();
        // A closed pipe (`acsctl watch | head`) ends the watch quietly.
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            break;
        }
    }
    Ok(())
}

fn is_metrics(subjects: &Subjects, subject: &str) -> bool {
    matches!(subjects.classify(subject), Some((kind, _)) if kind.starts_with("metrics"))
}

/// `{"subject": "...", "payload": <the JSON, or the text when it is not JSON>}`.
pub fn json_line(subject: &str, payload: &[u8]) -> String {
    let payload = serde_json::from_slice::<serde_json::Value>(payload).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(payload).into_owned())
    });
    serde_json::json!({ "subject": subject, "payload": payload }).to_string()
}

/// Local wall-clock time, `HH:MM:SS.mmm`.
pub fn timestamp() -> String {
    crate::clock::time_of_day_ms(crate::clock::now_ms(), &jiff::tz::TimeZone::system())
}
