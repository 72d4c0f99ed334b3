//! History checker for causal consistency.
//!
//! Reads a JSON-lines history written by the load generator and the nemesis
//! and looks for the bad patterns of Bouajjani, Enea, Guerraoui and Hamza,
//! "On verifying causal consistency" (POPL 2017), for differentiated
//! histories, plus named session guarantees and final-state checks
//! (divergence, lost writes). Everything is polynomial: the causal order is
//! kept as per-session vector clocks (O(ops × sessions)).
//!
//! Interpretation of the history:
//! * only `ok` operations count, plus `unknown` puts and deletes, which may
//!   have happened: an unknown put becomes a real write once some read
//!   returns its value; an unread unknown put, or an unknown delete, never
//!   serves as an overwriting write (so it cannot cause an alarm), but an
//!   unknown delete may explain an empty read or an absent final value;
//! * a delete is a write of a unique tombstone; an empty read reads from the
//!   initial state or from any delete that is not causally after it and not
//!   causally overwritten before it (the most permissive choice, so it adds
//!   no read-from edge).

mod finals;
mod graph;
mod order;
mod patterns;
pub mod record;
pub mod report;
mod sessions;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

pub use record::CheckError;
pub use report::{AnomalyKind, Report};

/// Options of `causalkv check`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The history file.
    pub history: PathBuf,
}

/// `causalkv check`: prints the report; exit status 1 unless the history is clean.
pub fn main(args: Args) -> anyhow::Result<i32> {
    let report = check_file(&args.history)?;
    println!("{report}");
    Ok(if report.is_clean() { 0 } else { 1 })
}

/// Checks a JSON-lines history read from `reader`.
pub fn check_history(reader: impl BufRead) -> Result<Report, CheckError> {
    let parsed = record::parse(reader)?;
    let history = graph::History::build(&parsed)?;
    let mut findings = report::Findings::default();
    patterns::check_cycles(&history, &mut findings);
    patterns::check_reads(&history, &mut findings);
    sessions::check_sessions(&history, &mut findings);
    finals::check_divergence(&parsed.finals, &mut findings);
    finals::check_lost_writes(&history, &parsed.finals, &mut findings);
    Ok(findings.into_report(
        history.op_records,
        history.ok_records,
        history.sessions.len(),
    ))
}

/// Checks the JSON-lines history stored in the file at `path`.
pub fn check_file(path: &Path) -> Result<Report, CheckError> {
    let file = File::open(path).map_err(|source| CheckError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    check_history(BufReader::new(file))
}
