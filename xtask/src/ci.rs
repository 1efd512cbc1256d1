//! `cargo xtask ci`: the checks CI runs, in the order that fails fastest.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// Runs fmt, clippy and the tests; extra arguments go to `cargo test`.
pub(crate) fn run(test_args: &[String]) -> Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ])?;
    let mut test = vec!["test", "--workspace", "--locked"];
    test.extend(test_args.iter().map(String::as_str));
    cargo(&test)
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("could not run `cargo {}`", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
