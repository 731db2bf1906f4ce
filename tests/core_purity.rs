//! The protocol cores stay pure, so that what the simulation checks is what runs: no core
//! module reaches the clock, the disk, sockets, an async runtime, logging or unseeded
//! randomness, and `common` (the only crate the cores share) does not even depend on the
//! crates that do I/O.

use std::path::{Path, PathBuf};

/// What a core must not name: I/O, time, threads, logging, process-wide randomness.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "std::time",
    "Instant",
    "SystemTime",
    "std::net",
    "std::fs",
    "std::thread",
    "std::process",
    "tracing::",
    "rand::rng(",
    "rand::random",
    "thread_rng",
    "runtime::",
    "async fn",
    ".await",
];

/// The crates that do I/O, which `common` must not depend on.
const IO_CRATES: &[&str] = &[
    "tokio",
    "tokio-rustls",
    "rustls",
    "socket2",
    "tracing",
    "tracing-subscriber",
    "axum",
    "hyper",
    "runtime",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(path: &Path, files: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), files);
        }
    } else if path.extension().is_some_and(|extension| extension == "rs") {
        files.push(path.to_path_buf());
    }
}

/// The core of each role: `core.rs` or the `core/` folder.
fn core_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for role in ["acceptor", "proposer", "learner", "client"] {
        let source = root().join(role).join("src");
        for core in [source.join("core.rs"), source.join("core")] {
            if core.exists() {
                rust_files(&core, &mut files);
            }
        }
    }
    files
}

#[test]
fn every_role_has_a_core_and_no_core_names_io_time_or_unseeded_randomness() {
    let files = core_files();
    for role in ["acceptor", "proposer", "learner", "client"] {
        assert!(
            files
                .iter()
                .any(|file| file.starts_with(root().join(role).join("src"))),
            "{role} has no core"
        );
    }
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in FORBIDDEN {
                if code.contains(word) {
                    found.push(format!("{}:{}: {word}", file.display(), number + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "a core does I/O: {found:#?}");
}

#[test]
fn common_depends_on_no_crate_that_does_io() {
    let manifest = std::fs::read_to_string(root().join("common/Cargo.toml")).unwrap();
    let dependencies = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("common has a [dependencies] table");
    for line in dependencies.lines() {
        let name = line
            .split(['=', '.', ' '])
            .next()
            .unwrap_or_default()
            .trim();
        assert!(
            !IO_CRATES.contains(&name),
            "common depends on {name}, so every core could"
        );
    }
}
