//! A progress bar for the long-running tools (`bench`, `nemesis`): elapsed time against the
//! planned run, then a spinner while the tool finishes (checks, final reads). Drawn on stderr
//! only when stderr is a terminal (indicatif hides it otherwise), so logs and CI stay clean.
//!
//! Must not: be used by the server, or block the tool it decorates.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Redraw period: smooth enough for a human, negligible CPU next to a load generator.
const TICK: Duration = Duration::from_millis(200);

/// Shows progress until dropped.
pub struct Progress {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

/// Starts a bar labelled `label` for a run planned to last `planned` (must be called inside a
/// tokio runtime).
pub fn timed(label: &str, planned: Duration) -> Progress {
    let millis = planned.as_millis().max(1) as u64;
    let bar = ProgressBar::new(millis);
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:40.cyan/blue}] {elapsed_precise} of {msg} planned",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar.set_message(format!("{:.0} s", planned.as_secs_f64()));
    let ticker = bar.clone();
    let task = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(TICK).await;
            let done = start.elapsed().as_millis() as u64;
            if done >= millis {
                break;
            }
            ticker.set_position(done);
        }
        ticker.set_position(millis);
        ticker.set_style(ProgressStyle::default_spinner());
        ticker.set_message("finishing (final reads, checks)…");
        ticker.enable_steady_tick(TICK);
    });
    Progress { bar, task }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}
