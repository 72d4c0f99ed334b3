//! Runs the causal-consistency checker on the hand-written fixture histories
//! in `tests/fixtures/histories/`: `good_<name>.jsonl` must be clean and
//! `bad_<kind>.jsonl` must report at least one anomaly of `<kind>`.

use std::path::{Path, PathBuf};

use causalkv::tools::check::{AnomalyKind, CheckError, check_file};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/histories");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .expect("stem")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn good_fixtures_are_clean() {
    let good: Vec<PathBuf> = fixtures()
        .into_iter()
        .filter(|p| stem(p).starts_with("good_"))
        .collect();
    assert!(
        good.len() >= 6,
        "expected the good fixtures, found {good:?}"
    );
    for path in good {
        let report = check_file(&path).expect("fixture parses");
        println!("{}: {report}", stem(&path));
        assert!(report.is_clean(), "{}: {report}", path.display());
        assert!(report.ops > 0);
    }
}

#[test]
fn bad_fixtures_report_their_kind() {
    let mut seen = Vec::new();
    for path in fixtures() {
        let name = stem(&path);
        let Some(kind_name) = name.strip_prefix("bad_") else {
            continue;
        };
        let kind = AnomalyKind::from_name(kind_name)
            .unwrap_or_else(|| panic!("{name}: unknown anomaly kind {kind_name}"));
        let report = check_file(&path).expect("fixture parses");
        println!("{name}: {report}");
        assert!(report.count(kind) > 0, "{name}: {report}");
        assert!(
            report.examples.iter().any(|e| e.starts_with(kind.name())),
            "{name}: no example of {kind}: {report}"
        );
        seen.push(kind);
    }
    for kind in AnomalyKind::ALL {
        assert!(seen.contains(&kind), "no bad fixture for {kind}");
    }
}

#[test]
fn final_state_counters() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/histories");
    let lost = check_file(&dir.join("bad_lost_write.jsonl")).expect("parses");
    assert_eq!((lost.lost_writes, lost.divergent_keys), (1, 0), "{lost}");
    let divergent = check_file(&dir.join("bad_divergence.jsonl")).expect("parses");
    assert_eq!(divergent.divergent_keys, 1, "{divergent}");
}

#[test]
fn missing_file_is_an_error() {
    let err = check_file(Path::new("/nonexistent/history.jsonl")).expect_err("missing");
    assert!(matches!(err, CheckError::Open { .. }), "{err}");
}
