//! Replays the fuzz corpora through the fuzz entry points (`stampd::fuzzing`), so a
//! regression fails the ordinary test suite without a fuzzer or a nightly toolchain.
//!
//! For each target in `fuzz/fuzz_targets/` it reads every file of `fuzz/seeds/TARGET/`
//! (named inputs from the test vectors), `fuzz/corpus/TARGET/` (what the fuzzer kept,
//! minimised) and `fuzz/regressions/TARGET/` (inputs that once crashed, when there are
//! any). A missing or empty seed or corpus directory fails the test, as does a target
//! without a replay here: a replay of nothing would pass for the wrong reason.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// A fuzz entry point: `stampd::fuzzing::TARGET`.
type EntryPoint = fn(&[u8]);

/// Every fuzz target and its entry point; `fuzz/fuzz_targets/NAME.rs` calls the same one.
const TARGETS: [(&str, EntryPoint); 6] = [
    ("request", stampd::fuzzing::request),
    ("response", stampd::fuzzing::response),
    ("certificate", stampd::fuzzing::certificate),
    ("http_head", stampd::fuzzing::http_head),
    ("config", stampd::config::fuzzing::config),
    ("journal", stampd::fuzzing::journal),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; `None` when it does not exist.
fn files(dir: &Path) -> Option<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut out: Vec<PathBuf> = entries
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    Some(out)
}

/// Runs every input of `target` through `run`; fails naming each input that panicked.
fn replay(target: &str) {
    let Some(&(_, run)) = TARGETS.iter().find(|(name, _)| *name == target) else {
        panic!("no entry point for fuzz target {target}");
    };
    let mut inputs = Vec::new();
    for kind in ["seeds", "corpus"] {
        let dir = fuzz_dir().join(kind).join(target);
        match files(&dir) {
            Some(found) if !found.is_empty() => inputs.extend(found),
            _ => panic!(
                "{}: missing or empty; every fuzz target needs its {kind} (fuzz/README.md)",
                dir.display()
            ),
        }
    }
    inputs.extend(files(&fuzz_dir().join("regressions").join(target)).unwrap_or_default());
    let mut failed = Vec::new();
    for path in &inputs {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "fuzz target {target}: {} of {} inputs panicked (their messages are above):\n{}",
        failed.len(),
        inputs.len(),
        failed.join("\n")
    );
}

#[test]
fn every_fuzz_target_has_a_replay() {
    let dir = fuzz_dir().join("fuzz_targets");
    let mut on_disk: Vec<String> = files(&dir)
        .unwrap_or_else(|| panic!("{}: missing", dir.display()))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .collect();
    on_disk.sort();
    let mut here: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    here.sort();
    assert_eq!(on_disk, here, "fuzz/fuzz_targets/ and TARGETS differ");
}

#[test]
fn request_corpus_replays() {
    replay("request");
}

#[test]
fn response_corpus_replays() {
    replay("response");
}

#[test]
fn certificate_corpus_replays() {
    replay("certificate");
}

#[test]
fn http_head_corpus_replays() {
    replay("http_head");
}

#[test]
fn config_corpus_replays() {
    replay("config");
}

#[test]
fn journal_corpus_replays() {
    replay("journal");
}
