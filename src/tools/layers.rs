//! The layering rules, checked on the source text: the product never imports `tools` (so
//! `causalkv serve` runs none of it), and `domain` imports nothing outside itself.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `.rs` file under `src/<sub>`, with its text.
fn sources(sub: &str) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(sub),
        &mut files,
    );
    assert!(!files.is_empty(), "no sources under src/{sub}");
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read source");
            (p, text)
        })
        .collect()
}

#[test]
fn the_product_never_imports_the_tools() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tools = src.join("tools");
    let offenders: Vec<_> = sources("")
        .into_iter()
        .filter(|(p, _)| !p.starts_with(&tools) && p != &src.join("main.rs"))
        .filter(|(_, text)| text.contains("tools::"))
        .map(|(p, _)| p)
        .collect();
    assert!(
        offenders.is_empty(),
        "product code imports tools: {offenders:?}"
    );
}

#[test]
fn domain_imports_only_domain() {
    for (path, text) in sources("domain") {
        for (n, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                assert!(
                    rest.starts_with("domain"),
                    "{}:{}: domain reaches outside itself: {line}",
                    path.display(),
                    n + 1
                );
            }
        }
    }
}
