//! Ctrl-C / SIGTERM, and waiting for sockets to finish closing.

use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// How long shutdown waits for sockets to send their close frames and go.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
pub(crate) async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// Waits until every socket task has dropped its `alive` sender (the caller has
/// dropped all others), or the drain timeout passes.
pub(crate) async fn drain(mut alive: mpsc::Receiver<()>) {
    match tokio::time::timeout(DRAIN_TIMEOUT, alive.recv()).await {
        Ok(_) => info!("all connections closed"),
        Err(_) => warn!("some connections did not close in time"),
    }
}
