//! `cargo xtask fuzz [--time SECONDS]`: runs the decoder's libFuzzer target
//! (cargo-fuzz, nightly), seeded with every fixture, and turns each input
//! that made it fail into a file under `fixtures/fuzz/`, where the test
//! suite keeps replaying it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Runs the fuzzer for the given number of seconds (default 60).
pub(crate) fn run(args: &[String]) -> Result<()> {
    let seconds = match args {
        [] => 60,
        [flag, value] if flag == "--time" => value
            .parse::<u64>()
            .with_context(|| format!("--time expects whole seconds, found {value:?}"))?,
        other => bail!("usage: cargo xtask fuzz [--time SECONDS], found {other:?}"),
    };
    let root = crate::workspace_root();
    ensure_tools()?;
    let corpus = root.join("fuzz/corpus/decode");
    seed_corpus(&root.join("fixtures"), &corpus)?;
    let artifacts = root.join("fuzz/artifacts/decode");
    let status = rustup_cargo()
        .current_dir(root.join("fuzz"))
        .args(["+nightly", "fuzz", "run", "decode"])
        .arg(&corpus)
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-max_len=65536",
            "-timeout=10",
            "-rss_limit_mb=2048",
        ])
        .status()
        .context("could not run cargo fuzz")?;
    let found = promote_artifacts(&artifacts, &root.join("fixtures/fuzz"))?;
    if !status.success() || !found.is_empty() {
        for path in &found {
            eprintln!("failing input kept as {}", path.display());
        }
        bail!(
            "the fuzzer found {} failing input(s) ({status}); fix the decoder, then `cargo test -p relaycb-core` replays them",
            found.len()
        );
    }
    eprintln!("fuzz: no failure in {seconds} s");
    Ok(())
}

/// A `cargo` through rustup, free of the variables the outer cargo set, so
/// that `+nightly` picks the nightly toolchain.
fn rustup_cargo() -> Command {
    let mut command = Command::new("cargo");
    for var in [
        "CARGO",
        "RUSTC",
        "RUSTUP_TOOLCHAIN",
        "RUSTDOC",
        "CARGO_TARGET_DIR",
    ] {
        command.env_remove(var);
    }
    command
}

fn ensure_tools() -> Result<()> {
    let nightly = rustup_cargo()
        .args(["+nightly", "--version"])
        .output()
        .context("could not run cargo +nightly")?;
    if !nightly.status.success() {
        bail!("cargo fuzz needs a nightly toolchain: `rustup toolchain install nightly`");
    }
    let has_fuzz = rustup_cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_fuzz {
        eprintln!("installing cargo-fuzz");
        let status = rustup_cargo()
            .args(["install", "cargo-fuzz", "--locked"])
            .status()
            .context("could not run cargo install")?;
        if !status.success() {
            bail!("`cargo install cargo-fuzz` failed ({status})");
        }
    }
    Ok(())
}

/// Copies every fixture body (and every line of the sequences) into the
/// corpus, so the fuzzer starts from real callbacks.
fn seed_corpus(fixtures: &Path, corpus: &Path) -> Result<()> {
    fs::create_dir_all(corpus).with_context(|| format!("creating {}", corpus.display()))?;
    for folder in ["docs", "drift", "invalid", "fuzz", "sequences"] {
        let Ok(entries) = fs::read_dir(fixtures.join(folder)) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            if folder == "sequences" {
                for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                    if !line.is_empty() {
                        fs::write(corpus.join(format!("{stem}-{i}")), line)?;
                    }
                }
            } else {
                fs::write(corpus.join(format!("{folder}-{stem}")), &bytes)?;
            }
        }
    }
    Ok(())
}

/// Moves libFuzzer's crash, timeout and out-of-memory inputs into
/// `fixtures/fuzz/`.
fn promote_artifacts(artifacts: &Path, keep: &Path) -> Result<Vec<PathBuf>> {
    let Ok(entries) = fs::read_dir(artifacts) else {
        return Ok(Vec::new());
    };
    let mut kept = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !["crash-", "timeout-", "oom-", "leak-"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            continue;
        }
        fs::create_dir_all(keep)?;
        let target = keep.join(format!("{name}.bin"));
        fs::rename(&path, &target)
            .or_else(|_| fs::copy(&path, &target).map(|_| ()))
            .with_context(|| format!("keeping {}", path.display()))?;
        kept.push(target);
    }
    Ok(kept)
}
