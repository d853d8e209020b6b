//! Corpus replay shared by the crates' `tests/fuzz_corpus.rs` (included with `#[path]`, since the
//! fuzz package is not a workspace member): runs a fuzz target's entry function on every
//! checked-in input, so `.ci/run` catches a regression on any input a campaign kept (including
//! past crashes) without cargo-fuzz.

use std::path::{Path, PathBuf};

/// Runs `entry` on every file of `fuzz/corpus/<target>/`; fails naming each input that panicked.
pub fn replay(target: &str, entry: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(corpus_root()).join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} missing: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    // A corpus that went missing must not pass as "nothing failed".
    assert!(files.len() >= 10, "corpus {} has only {} inputs", dir.display(), files.len());
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("corpus file");
            std::panic::catch_unwind(|| entry(&data)).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{} of {} inputs failed: {failed:?}", failed.len(), files.len());
}

/// `fuzz/corpus` relative to the including crate's manifest (crates/* or benches/).
fn corpus_root() -> &'static str {
    if Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").is_dir() { "../fuzz/corpus" } else { "../../fuzz/corpus" }
}
