//! `acsctl load`: an open-loop HTTP load generator.
//!
//! Requests start on a fixed schedule (`rps` per second) whatever the answers take, as real
//! users do; when `concurrency` requests are already in flight, a due request is counted as
//! `skipped` instead of waiting. Results are counted per second (by completion time) and in
//! total: status codes, failures by kind, and, when the body is JSON with an `"instance"` field
//! (demo-web's `/whoami`), which instance answered.
//!
//! Files: this one holds the options and the command ([`run_command`]); `generator.rs` the request schedule ([`run`]);
//! `report.rs` the per-second and total [`Counts`], their µs latency [`Histogram`] and the
//! text, table and JSON output (`--json`).

mod generator;
mod report;

use std::time::Duration;

use hyper::Uri;

pub use generator::{instance_of, run};
pub use report::{Counts, Histogram, LoadReport, Tick};

/// `acsctl load URL ...`: one line per second and the total (text or JSON lines), then the
/// latency table; fails when no request succeeded.
pub async fn run_command(
    args: crate::cli::LoadArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> crate::Result<()> {
    use std::io::Write as _;
    // A closed stdout (`acsctl load ... | head`) must not end the run with a panic: the load
    // goes on and its exit status still says whether a request succeeded.
    let line = |text: &dyn std::fmt::Display| {
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    };
    let json = args.json;
    let opts = args.into_options();
    let report = run(&opts, shutdown, |tick| {
        if json {
            line(&tick.to_json());
        } else {
            line(tick);
        }
    })
    .await?;
    if json {
        line(&report.to_json());
    } else {
        line(&report);
        line(&report.latency_table());
    }
    if report.ok == 0 && report.sent > 0 {
        return Err(crate::Error::Failed("no request succeeded".into()));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `http://host:port/path`.
    pub url: String,
    pub rps: f64,
    pub duration: Duration,
    pub concurrency: usize,
    pub request_timeout: Duration,
    /// Host header override.
    pub host: Option<String>,
}

impl LoadOptions {
    pub fn new(url: impl Into<String>, rps: f64, duration: Duration) -> Self {
        Self {
            url: url.into(),
            rps,
            duration,
            concurrency: 256,
            request_timeout: Duration::from_secs(10),
            host: None,
        }
    }

    pub fn validate(&self) -> Result<Uri, LoadError> {
        let uri: Uri = self.url.parse().map_err(|e| {
            LoadError::Invalid(format!(
                "invalid URL {:?}: {e}; expected e.g. http://127.0.0.1:8080/whoami",
                self.url
            ))
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(LoadError::Invalid(format!(
                    "URL scheme {other:?} is not supported; use http://"
                )))
            }
            None => {
                return Err(LoadError::Invalid(format!(
                    "URL {:?} needs a scheme and a host: e.g. http://127.0.0.1:8080/whoami",
                    self.url
                )))
            }
        }
        if uri.authority().is_none() {
            return Err(LoadError::Invalid(format!(
                "URL {:?} has no host",
                self.url
            )));
        }
        if !(self.rps.is_finite() && self.rps > 0.0 && self.rps <= 100_000.0) {
            return Err(LoadError::Invalid(format!(
                "--rps must be in (0, 100000], got {}",
                self.rps
            )));
        }
        if self.duration.is_zero() {
            return Err(LoadError::Invalid("--duration must be > 0".into()));
        }
        if self.concurrency == 0 {
            return Err(LoadError::Invalid("--concurrency must be >= 1".into()));
        }
        if self.request_timeout.is_zero() {
            return Err(LoadError::Invalid("--request-timeout must be > 0".into()));
        }
        Ok(uri)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_options() {
        let ok = LoadOptions::new("http://127.0.0.1:8080/whoami", 10.0, Duration::from_secs(1));
        ok.validate().unwrap();
        for (url, rps, secs, msg) in [
            ("https://x/", 1.0, 1, "not supported"),
            ("127.0.0.1:8080/x", 1.0, 1, "e.g. http://"),
            ("127.0.0.1:8080", 1.0, 1, "e.g. http://"),
            ("http://x/", 0.0, 1, "--rps"),
            ("http://x/", f64::NAN, 1, "--rps"),
            ("http://x/", 1.0, 0, "--duration"),
            ("not a url", 1.0, 1, "invalid URL"),
        ] {
            let err = LoadOptions::new(url, rps, Duration::from_secs(secs))
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains(msg), "{url}: {err}");
        }
        let mut o = ok.clone();
        o.concurrency = 0;
        assert!(o.validate().is_err());
    }
}
