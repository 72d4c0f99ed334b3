//! Progress-based bounds on a reshard's long steps. A copy of a big store (or one onto a slow
//! disk) may take minutes, so no step of it has a fixed deadline on the whole; each is cut off
//! only when it stops moving:
//! - a sender streams reports of its copy progress ([`Node::send_reshard_reports`]) and its
//!   coordinator gives up on it once that progress has not grown for [`SEND_IDLE`]
//!   ([`watch_sender`]);
//! - a prepared node drops the change when it has heard nothing of it for the staging timeout
//!   (`reshard::STAGING_TIMEOUT`): each staged batch, and the coordinator's keep-alive every
//!   [`KEEPALIVE_EVERY`] during the transfer ([`Node::keep_prepared`]), count as news;
//! - each batch a sender sends must be taken within the bulk RPC deadline (one batch is at most
//!   a few MiB), and a pull is bounded per chunk (`sync::PULL_IDLE`).

use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use tokio::time::Instant;
use tracing::warn;

use super::peers::{PeerError, PeerResult, SendReport, SendReports};
use super::{Error, Node};
use crate::domain::shard::ShardMap;

/// How often a sender reports its progress.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);
/// A sender whose copy progress has not grown for this long is given up on (it stalled, or
/// waits on something that does not move) and the reshard aborts.
pub const SEND_IDLE: Duration = Duration::from_secs(30);
/// How often the coordinator tells every prepared node that the change is still going on: a
/// quarter of the staging timeout, so three keep-alives in a row may be lost.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(15);

/// Where a sender's report stream stands.
struct Reporting {
    node: Node,
    work: Option<BoxFuture<'static, Result<u64, Error>>>,
    ticks: tokio::time::Interval,
}

impl Node {
    /// Runs [`Node::send_reshard_data`] for `map`, reporting this node's copy progress every
    /// [`REPORT_EVERY`] (the first at once), then how many keys it sent. Dropping the stream
    /// cancels the send.
    pub fn send_reshard_reports(
        &self,
        map: ShardMap,
    ) -> BoxStream<'static, Result<SendReport, Error>> {
        let node = self.clone();
        let state = Reporting {
            node: self.clone(),
            work: Some(async move { node.send_reshard_data(map).await }.boxed()),
            ticks: tokio::time::interval(REPORT_EVERY),
        };
        futures::stream::unfold(state, |mut s| async move {
            let work = s.work.as_mut()?;
            tokio::select! {
                r = work => {
                    s.work = None;
                    Some((r.map(SendReport::Done), s))
                }
                _ = s.ticks.tick() => {
                    let p = s.node.stats.copy_progress();
                    Some((Ok(SendReport::Progress(p)), s))
                }
            }
        })
        .boxed()
    }

    /// Tells every node of `nodes` (this one included) every [`KEEPALIVE_EVERY`] that the
    /// change to `map` is still going on, so a long transfer does not outlive anyone's staging
    /// timeout. Returns (an error) only when a node answers that it no longer has the change
    /// prepared: then the reshard must abort. A node that does not answer is left to the
    /// transfer (which fails if it sends there) or to the commit (a node that misses it learns
    /// the map by heartbeat).
    pub(super) async fn keep_prepared(&self, nodes: &[String], map: &ShardMap) -> Error {
        loop {
            tokio::time::sleep(KEEPALIVE_EVERY).await;
            let answers = join_all(nodes.iter().map(|n| async move {
                let r = if *n == *self.me {
                    self.stage(map.epoch, Vec::new())
                } else {
                    match self.peers.receive_reshard_data(n, map.epoch, Vec::new()).await {
                        Err(e @ PeerError::Refused(_)) => Err(Error::peer(n, e)),
                        Err(e) => {
                            warn!(node = %self.me, peer = %n, error = %e, "reshard keep-alive not delivered");
                            Ok(())
                        }
                        Ok(_) => Ok(()),
                    }
                };
                r.map_err(|e| Error::Refused {
                    node: n.clone(),
                    reason: e.to_string(),
                })
            }))
            .await;
            if let Some(e) = answers.into_iter().find_map(Result::err) {
                return e;
            }
        }
    }
}

/// Follows a sender's `reports` to the end: its key count once it is done, or an error when it
/// fails, when the stream breaks off, or when its progress has not grown for `idle`.
pub async fn watch_sender(mut reports: SendReports, idle: Duration) -> PeerResult<u64> {
    let mut last = None;
    let mut moved_at = Instant::now();
    loop {
        let next = tokio::time::timeout_at(moved_at + idle, reports.next()).await;
        match next {
            Err(_) => {
                return Err(PeerError::Unreachable(format!(
                    "no reshard progress for {} s",
                    idle.as_secs()
                )));
            }
            Ok(None) => return Err(PeerError::Unreachable("report stream ended early".into())),
            Ok(Some(Err(e))) => return Err(e),
            Ok(Some(Ok(SendReport::Done(n)))) => return Ok(n),
            Ok(Some(Ok(SendReport::Progress(p)))) => {
                if last != Some(p) {
                    last = Some(p);
                    moved_at = Instant::now();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reports(items: Vec<(u64, PeerResult<SendReport>)>) -> SendReports {
        futures::stream::iter(items)
            .then(|(after_ms, r)| async move {
                tokio::time::sleep(Duration::from_millis(after_ms)).await;
                r
            })
            .boxed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_that_keeps_progressing_is_followed_however_long_it_takes() {
        let idle = Duration::from_secs(30);
        // 100 reports 20 s apart: 2000 s in all, each one a step further
        let mut items: Vec<(u64, PeerResult<SendReport>)> = (0..100)
            .map(|i| (20_000, Ok(SendReport::Progress(i))))
            .collect();
        items.push((20_000, Ok(SendReport::Done(7))));
        let started = Instant::now();
        assert_eq!(watch_sender(reports(items), idle).await, Ok(7));
        assert!(started.elapsed() > Duration::from_secs(2000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_whose_progress_stops_is_given_up_on_even_while_it_reports() {
        let idle = Duration::from_secs(30);
        let mut items: Vec<(u64, PeerResult<SendReport>)> = (0..5)
            .map(|i| (1_000, Ok(SendReport::Progress(i))))
            .collect();
        // then it keeps reporting the same progress
        items.extend((0..100).map(|_| (1_000, Ok(SendReport::Progress(4)))));
        let started = Instant::now();
        let r = watch_sender(reports(items), idle).await;
        assert!(matches!(r, Err(PeerError::Unreachable(_))), "{r:?}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(34) && took <= Duration::from_secs(36),
            "{took:?}"
        );
        // a stream that breaks off, or fails, ends the watch too
        let r = watch_sender(reports(vec![(1, Ok(SendReport::Progress(1)))]), idle).await;
        assert!(r.is_err());
        let refused = PeerError::Refused("Aborted: no".into());
        let r = watch_sender(reports(vec![(1, Err(refused.clone()))]), idle).await;
        assert_eq!(r, Err(refused));
    }
}
