//! `cargo xtask chaos [--callbacks N] [--kills K] [--terms T] [--clients C]
//! [--seed S]`: builds relaycb-server in release mode and runs
//! relaycb-chaos against it: unique callbacks from concurrent clients, the
//! server killed with SIGKILL (and stopped with SIGTERM) at moments chosen
//! by the seed, then every answered callback looked for in the store.
//! Prints the counts; fails on any loss, duplicate or mismatch.

use std::process::Command;

use anyhow::{Context, Result, bail};
use relaycb_chaos::Plan;

pub(crate) fn run(args: &[String]) -> Result<()> {
    let root = crate::workspace_root();
    let mut plan = Plan::new(root.join("target/release/relaycb-server"));
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .with_context(|| format!("{flag} expects a whole number, found {value:?}"))
        };
        match flag.as_str() {
            "--callbacks" => plan.callbacks = number()? as usize,
            "--kills" => plan.kills = number()? as usize,
            "--terms" => plan.terms = number()? as usize,
            "--clients" => plan.clients = number()? as usize,
            "--seed" => plan.seed = number()?,
            other => bail!(
                "unknown option {other:?}; usage: cargo xtask chaos [--callbacks N] [--kills K] [--terms T] [--clients C] [--seed S]"
            ),
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("$ cargo build --release -p relaycb-server");
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "-p", "relaycb-server"])
        .status()
        .context("could not run cargo build")?;
    if !status.success() {
        bail!("building relaycb-server failed ({status})");
    }
    eprintln!(
        "chaos: {} callbacks, {} clients, {} SIGKILLs, {} SIGTERMs, seed {}",
        plan.callbacks, plan.clients, plan.kills, plan.terms, plan.seed
    );
    let report = relaycb_chaos::run(&plan)?;
    println!("{report}");
    report.check()
}
