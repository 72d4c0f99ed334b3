//! Supervision of background loops: a loop that panics is logged and restarted (after a pause)
//! until the node shuts down. A loop that returns normally is done.
//!
//! Must not hold any lock; must not decide anything about cluster state.

use std::future::Future;
use std::time::Duration;

use tracing::error;

use super::Node;

/// Pause before restarting a loop that died: long enough that a loop that panics at once does
/// not spin, short enough that heartbeats resume well inside the 5 s failure-detection budget.
const RESTART_PAUSE: Duration = Duration::from_millis(500);

impl Node {
    /// Runs `make()` as a named background task; if it panics, logs it and runs a fresh
    /// `make()` again, until shutdown.
    pub fn spawn_supervised<F, Fut>(&self, name: &'static str, make: F)
    where
        F: Fn(Node) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let node = self.clone();
        tokio::spawn(async move {
            loop {
                match tokio::spawn(make(node.clone())).await {
                    Ok(()) => return,
                    Err(e) if e.is_panic() => {
                        error!(node = %node.me, task = name, "background loop panicked; restarting");
                    }
                    Err(_) => return,
                }
                if node.is_shutting_down() {
                    return;
                }
                tokio::time::sleep(RESTART_PAUSE).await;
            }
        });
    }
}
