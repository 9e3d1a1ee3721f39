//! One tracing set-up for every binary.

/// Logs to stderr, filtered by `RUST_LOG` (else `default_filter`, e.g. `"info"`), with
/// colours only on a terminal.
///
/// `init` also installs a `LogTracer`, so records of crates that log through `log` (Pingora)
/// show up too. Calling it twice is harmless: the second call is ignored.
pub fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
