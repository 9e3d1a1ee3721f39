//! One tracing set-up for every binary: [`init_tracing`], or [`LogArgs::init`] for daemons
//! that take `--log-format text|json`.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, `spans`), for a
    /// log collector.
    Json,
}

/// The `--log-format` flag every daemon flattens into its own.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// Log lines as `text` or `json` (one object per line), on stderr.
    #[arg(long = "log-format", env = "ACS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// [`init_tracing`] in the chosen format.
    pub fn init(&self, default_filter: &str) {
        init_tracing_as(default_filter, self.log_format, std::io::stderr);
    }
}

/// Logs text to stderr, filtered by `RUST_LOG` (else `default_filter`, e.g. `"info"`), with
/// colours only on a terminal.
///
/// `init` also installs a `LogTracer`, so records of crates that log through `log` (Pingora)
/// show up too. Calling it twice is harmless: the second call is ignored.
pub fn init_tracing(default_filter: &str) {
    init_tracing_as(default_filter, LogFormat::Text, std::io::stderr);
}

fn init_tracing_as<W>(default_filter: &str, format: LogFormat, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // `try_init` also bridges the `log` records in (tracing-subscriber's `tracing-log`).
    let _ = subscriber(default_filter, format, writer).try_init();
}

/// The subscriber [`init_tracing`] installs, writing to `writer`.
fn subscriber<W>(
    default_filter: &str,
    format: LogFormat,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(
            builder
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .finish(),
        ),
        LogFormat::Json => Box::new(builder.json().finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = subscriber("info", format, move || buf.clone());
        tracing::subscriber::with_default(sub, || {
            tracing::info!(service = "web", from = 2, to = 3, "scaled out");
        });
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_writes_one_object_per_line_with_the_fields() {
        let line = logged(LogFormat::Json);
        let v: serde_json::Value = serde_json::from_str(line.trim()).expect(&line);
        assert_eq!(v["level"], "INFO", "{line}");
        assert_eq!(v["fields"]["message"], "scaled out", "{line}");
        assert_eq!(v["fields"]["service"], "web", "{line}");
        assert_eq!(v["fields"]["to"], 3, "{line}");
    }

    #[test]
    fn text_is_one_readable_line() {
        let line = logged(LogFormat::Text);
        assert!(
            line.contains("scaled out") && line.contains("service=\"web\""),
            "{line}"
        );
        assert!(serde_json::from_str::<serde_json::Value>(line.trim()).is_err());
    }

    #[test]
    fn the_flag_takes_text_or_json() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            log: LogArgs,
        }
        use clap::Parser;
        let json = Cli::try_parse_from(["x", "--log-format", "json"]).unwrap();
        assert_eq!(json.log.log_format, LogFormat::Json);
        assert_eq!(
            Cli::try_parse_from(["x"]).unwrap().log.log_format,
            LogFormat::Text
        );
        let e = Cli::try_parse_from(["x", "--log-format", "xml"])
            .err()
            .unwrap();
        assert!(e.to_string().contains("--log-format"), "{e}");
    }
}
