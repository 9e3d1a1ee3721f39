//! Stopping on a signal.

use tracing::{info, warn};

/// Resolves on SIGINT or SIGTERM. If the SIGTERM handler cannot be installed it says so and
/// waits for SIGINT alone, instead of panicking as a fresh `expect` would.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot watch SIGTERM; stop with SIGINT (Ctrl-C)");
            if let Err(e) = tokio::signal::ctrl_c().await {
                warn!(error = %e, "cannot watch SIGINT either; running until killed");
                std::future::pending::<()>().await;
            }
            return;
        }
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => match r {
            Ok(()) => info!("SIGINT: shutting down"),
            Err(e) => {
                warn!(error = %e, "cannot watch SIGINT; stop with SIGTERM");
                term.recv().await;
                info!("SIGTERM: shutting down");
            }
        },
        _ = term.recv() => info!("SIGTERM: shutting down"),
    }
}
