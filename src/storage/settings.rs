//! Durability settings: `DATA_DIR` (or `--data-dir`), `CKV_FSYNC`, `CKV_FSYNC_INTERVAL_MS`,
//! `CKV_RECOVER_FROM_PEERS`. Parsing is a pure function of a variable lookup.

use std::path::PathBuf;
use std::time::Duration;

/// Default interval of `CKV_FSYNC=batch`: what an OS crash or power loss can lose at most.
pub const DEFAULT_FSYNC_INTERVAL_MS: u64 = 100;

/// Default free space the data directory's disk must keep (`CKV_MIN_FREE_MB`): below it writes
/// are refused (503) before the engine meets a full disk, which it cannot recover from without a
/// restart; 64 MiB is a few memtable flushes and journal growth.
pub const DEFAULT_MIN_FREE_MB: u64 = 64;

/// When written data is forced to the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Before every acknowledgement (concurrent writes share one fsync).
    Always,
    /// At least every interval; acknowledged once handed to the OS.
    Batch(Duration),
    /// Never forced: the OS writes back when it likes; acknowledged once handed to the OS.
    Off,
}

impl Fsync {
    /// The name used in `CKV_FSYNC`.
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Batch(_) => "batch",
            Fsync::Off => "off",
        }
    }
}

/// The durability part of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Where the node keeps its data; `None` = in memory only.
    pub data_dir: Option<PathBuf>,
    /// The fsync policy (meaningful with a data directory).
    pub fsync: Fsync,
    /// Set a damaged data directory aside and copy the shard from peers instead of refusing to
    /// start.
    pub recover_from_peers: bool,
    /// Free bytes to keep on the data directory's disk (`CKV_MIN_FREE_MB`).
    pub min_free_bytes: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: None,
            fsync: Fsync::Always,
            recover_from_peers: false,
            min_free_bytes: DEFAULT_MIN_FREE_MB << 20,
        }
    }
}

impl Settings {
    /// Reads the settings; `Err((variable, problem))` on a bad value.
    pub fn from_vars(
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, (&'static str, String)> {
        let set = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let interval = match set("CKV_FSYNC_INTERVAL_MS") {
            None => DEFAULT_FSYNC_INTERVAL_MS,
            Some(v) => v.parse::<u64>().ok().filter(|n| *n >= 1).ok_or((
                "CKV_FSYNC_INTERVAL_MS",
                format!("not a positive integer: {v:?}"),
            ))?,
        };
        let fsync = match set("CKV_FSYNC").as_deref() {
            None | Some("always") => Fsync::Always,
            Some("batch") => Fsync::Batch(Duration::from_millis(interval)),
            Some("off") => Fsync::Off,
            Some(v) => {
                return Err(("CKV_FSYNC", format!("one of always, batch, off; not {v:?}")));
            }
        };
        let recover_from_peers = matches!(
            set("CKV_RECOVER_FROM_PEERS").as_deref(),
            Some("1" | "true" | "yes" | "on")
        );
        let min_free_mb = match set("CKV_MIN_FREE_MB") {
            None => DEFAULT_MIN_FREE_MB,
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| ("CKV_MIN_FREE_MB", format!("not a number: {v:?}")))?,
        };
        Ok(Self {
            data_dir: set("DATA_DIR").map(PathBuf::from),
            fsync,
            recover_from_peers,
            min_free_bytes: min_free_mb << 20,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<Settings, (&'static str, String)> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_vars(&|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn unset_is_in_memory_and_always_is_the_default() {
        assert_eq!(parse(&[]), Ok(Settings::default()));
        let s = parse(&[("DATA_DIR", "/data")]).unwrap();
        assert_eq!(s.data_dir, Some(PathBuf::from("/data")));
        assert_eq!(s.fsync, Fsync::Always);
    }

    #[test]
    fn policies_and_their_errors() {
        let s = parse(&[("CKV_FSYNC", "batch"), ("CKV_FSYNC_INTERVAL_MS", "20")]).unwrap();
        assert_eq!(s.fsync, Fsync::Batch(Duration::from_millis(20)));
        assert_eq!(parse(&[("CKV_FSYNC", "off")]).unwrap().fsync, Fsync::Off);
        assert_eq!(
            parse(&[("CKV_FSYNC", "sometimes")]).unwrap_err().0,
            "CKV_FSYNC"
        );
        assert_eq!(
            parse(&[("CKV_FSYNC_INTERVAL_MS", "0")]).unwrap_err().0,
            "CKV_FSYNC_INTERVAL_MS"
        );
        assert!(
            parse(&[("CKV_RECOVER_FROM_PEERS", "1")])
                .unwrap()
                .recover_from_peers
        );
    }
}
