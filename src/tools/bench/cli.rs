//! The `causalkv bench` command: runs the benchmark under a progress bar and prints its
//! summary (text, or one JSON object with `--json`).

use std::time::Duration;

use super::{Options, run};

/// `causalkv bench`.
pub fn main(opts: Options) -> anyhow::Result<i32> {
    let planned = Duration::from_secs_f64((opts.warmup + opts.seconds).max(0.0));
    let summary = tokio::runtime::Runtime::new()?.block_on(async {
        let _bar = crate::tools::progress::timed("bench", planned);
        run(&opts).await
    })?;
    if opts.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{summary}");
    }
    Ok(0)
}
