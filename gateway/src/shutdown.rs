//! The shutdown signal: a `watch` flag that turns true once, when verigated stops
//! accepting. Accept loops, own-endpoint connections, the manifest refresher and a
//! running snapshot job each hold a receiver and finish when it turns.

use tokio::sync::watch;

/// Completes when `shutdown` turns true (or its sender is gone).
pub async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send; drop it before anything else awaits.
    let _ = shutdown.wait_for(|stop| *stop).await;
}
