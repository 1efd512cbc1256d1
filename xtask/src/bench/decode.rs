//! Benchmark 3: decode. relaycb-core's typed `decode` of a VodSourceFileStart
//! body (the documentation's example in the wire form relaycb encodes)
//! against `serde_json::from_slice::<Value>` of the same bytes, measured in
//! this process by alternating short batches of each, so that both see the
//! same machine; the figure is the median of the per-round ratios.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::Plan;
use super::report::{Goal, Report, Target};
use super::stats::Spread;

/// Decodes per batch.
const BATCH: u32 = 500;
/// Upper bound on the time spent in this benchmark.
const TIME_LIMIT: Duration = Duration::from_secs(30);

/// The documentation's VodSourceFileStart example.
const FIXTURE: &[u8] = include_bytes!("../../../fixtures/docs/vod_source_file_start.json");

/// Runs benchmark 3 and adds its table and target.
pub(crate) fn run(plan: &Plan, report: &mut Report) -> Result<()> {
    let decoded = relaycb_core::decode(FIXTURE).context("the fixture does not decode")?;
    let body = relaycb_core::encode(&decoded.callback);
    relaycb_core::decode(&body).context("the re-encoded fixture does not decode")?;
    serde_json::from_slice::<serde_json::Value>(&body).context("the body is not JSON")?;

    let typed = || {
        for _ in 0..BATCH {
            black_box(relaycb_core::decode(black_box(&body)).ok());
        }
    };
    let value = || {
        for _ in 0..BATCH {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(&body)).ok());
        }
    };
    // Warm caches and branch predictors before counting.
    for _ in 0..10 {
        typed();
        value();
    }
    let (mut ratios, mut typed_ns, mut value_ns) = (Vec::new(), Vec::new(), Vec::new());
    let started = Instant::now();
    for round in 0..plan.decode_rounds {
        if started.elapsed() > TIME_LIMIT {
            break;
        }
        // Alternate which goes first, so that neither always follows the other.
        let (t, v) = if round % 2 == 0 {
            let t = time(typed);
            (t, time(value))
        } else {
            let v = time(value);
            (time(typed), v)
        };
        ratios.push(t / v);
        typed_ns.push(t / f64::from(BATCH));
        value_ns.push(v / f64::from(BATCH));
    }
    let ratio = Spread::of(ratios.iter().copied()).context("no decode round ran")?;
    let t = Spread::of(typed_ns).context("no decode round ran")?;
    let v = Spread::of(value_ns).context("no decode round ran")?;
    let mbps = |ns: f64| body.len() as f64 / ns * 1e9 / 1e6;
    let mut text = format!(
        "A {}-byte VodSourceFileStart body, {} rounds of {BATCH} decodes each way, \
         alternating; median [min–max] over rounds.\n\n\
         | decoder | ns per body | MB/s (median) | ratio to Value |\n|---|---|---|---|\n",
        body.len(),
        ratios.len()
    );
    let _ = writeln!(
        text,
        "| relaycb_core::decode (typed) | {} | {:.0} | {} |",
        t.show(0),
        mbps(t.median),
        ratio.show(2)
    );
    let _ = writeln!(
        text,
        "| serde_json::from_slice::<Value> | {} | {:.0} | 1 |",
        v.show(0),
        mbps(v.median)
    );
    eprintln!(
        "bench: decode: typed {:.0} ns, Value {:.0} ns, ratio {:.2}",
        t.median, v.median, ratio.median
    );
    report.target(Target::new(
        "decode: typed / Value time",
        ratio.median,
        Goal::AtMost(0.8),
        "",
    ));
    report.section("3. Decode", text);
    Ok(())
}

/// Nanoseconds `f` took.
fn time(f: impl Fn()) -> f64 {
    let begun = Instant::now();
    f();
    begun.elapsed().as_nanos() as f64
}
