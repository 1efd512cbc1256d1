//! Crash safety of relaycb-server, checked from outside: a run starts the
//! real binary on a free loopback port, drives it with unique callbacks
//! from concurrent clients that retry until answered (as Tencent does),
//! and at chosen moments kills it with SIGKILL or stops it with SIGTERM,
//! starting it again each time. At the end the database file is opened
//! read-only and compared with what the clients were told:
//!
//! - every callback answered 200 is stored, exactly once (`lost`,
//!   `duplicated`), and nothing is stored that was not answered;
//! - every junk body answered 4xx is in the rejected store, and the file
//!   passes SQLite's integrity check;
//! - the task state the server serves (`GET /api/tasks`, before and after
//!   a last restart) equals relaycb-core's fold of exactly those events,
//!   and the events it lists for each task (`GET /api/events?task_id=`,
//!   page by page) are exactly that task's rows;
//! - every SIGTERM ended in exit status 0, and no request was answered
//!   with a 5xx (answered without its commit).
//!
//! `cargo xtask chaos` runs the full size; relaycb-server's test suite runs
//! a short one against its debug binary.
//!
//! ```no_run
//! let plan = relaycb_chaos::Plan::new("target/release/relaycb-server".into());
//! let report = relaycb_chaos::run(&plan)?;
//! println!("{report}");
//! report.check()?;
//! # anyhow::Ok(())
//! ```

mod bodies;
mod client;
mod load;
mod rng;
mod server;
mod verify;

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use load::{Fate, Ledger};
use rng::Rng;
use server::{Launch, Server};

/// What a run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The relaycb-server binary.
    pub binary: PathBuf,
    /// Distinct callbacks to send (one in 25 is junk).
    pub callbacks: usize,
    /// SIGKILLs, at moments chosen by the seed.
    pub kills: usize,
    /// SIGTERMs under load, at moments chosen by the seed.
    pub terms: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Relay tasks the callbacks are spread over.
    pub tasks: u64,
    /// Chooses the bodies and the moments.
    pub seed: u64,
}

impl Plan {
    /// The full-size run of `cargo xtask chaos`: 50,000 callbacks, 10
    /// kills and 2 graceful stops, 16 clients.
    pub fn new(binary: PathBuf) -> Plan {
        Plan {
            binary,
            callbacks: 50_000,
            kills: 10,
            terms: 2,
            clients: 16,
            tasks: 64,
            seed: 1,
        }
    }
}

/// What a run found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Valid callbacks sent at least once.
    pub sent: u64,
    /// Junk bodies sent at least once.
    pub junk_sent: u64,
    /// Requests, retries included.
    pub requests: u64,
    /// Valid callbacks answered 200.
    pub answered: u64,
    /// Valid callbacks in the store.
    pub stored: u64,
    /// Answered 200 but not in the store.
    pub lost: u64,
    /// Stored more than once.
    pub duplicated: u64,
    /// In the store but never answered 200 (the clients gave up on them).
    pub stored_unanswered: u64,
    /// Valid callbacks refused with a 4xx, or never answered.
    pub not_acknowledged: u64,
    /// Junk bodies answered 4xx.
    pub junk_refused: u64,
    /// Refused junk bodies missing from the rejected store.
    pub junk_missing: u64,
    /// Valid callbacks found in the rejected store, junk found among the
    /// events, or rows from no body of this run.
    pub misplaced: u64,
    /// Deliveries counted above the requests that were sent.
    pub overcounted: u64,
    /// Answers 5xx: answered without a commit.
    pub unavailable: u64,
    /// Requests that got no answer (server down, connection cut).
    pub unanswered_requests: u64,
    /// SIGKILLs done.
    pub kills: u64,
    /// SIGTERMs done, and those that did not end with exit status 0.
    pub terms: u64,
    pub unclean_terms: u64,
    /// Whether the database passed `PRAGMA integrity_check`.
    pub intact: bool,
    /// Tasks compared, and the differences between the API and the fold
    /// or the stored rows.
    pub tasks: u64,
    pub task_mismatches: Vec<String>,
    /// Wall time of the load.
    pub elapsed: Duration,
}

impl Report {
    /// Every broken promise, in words; empty when the run passed.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut count = |n: u64, what: &str| {
            if n > 0 {
                out.push(format!("{n} {what}"));
            }
        };
        count(self.lost, "answered 200 but lost");
        count(self.duplicated, "stored more than once");
        count(self.stored_unanswered, "stored but never answered");
        count(self.not_acknowledged, "valid callbacks never acknowledged");
        count(
            self.junk_missing,
            "refused bodies missing from the rejected store",
        );
        count(self.misplaced, "rows in the wrong table or from nowhere");
        count(
            self.overcounted,
            "deliveries counted beyond the requests sent",
        );
        count(self.unavailable, "answers 5xx (answered without a commit)");
        count(self.unclean_terms, "SIGTERMs without a clean exit");
        if !self.intact {
            out.push("the database failed its integrity check".to_owned());
        }
        out.extend(self.task_mismatches.iter().take(5).cloned());
        if self.task_mismatches.len() > 5 {
            out.push(format!(
                "... {} task mismatches in all",
                self.task_mismatches.len()
            ));
        }
        out
    }

    /// Fails with every problem when the run broke a promise.
    pub fn check(&self) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("chaos run failed: {}", problems.join("; "))
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sent {} (and {} junk)  answered {}  stored {}  lost {}  duplicated {}",
            self.sent, self.junk_sent, self.answered, self.stored, self.lost, self.duplicated
        )?;
        writeln!(
            f,
            "requests {} ({} without answer, {} answered 5xx)  kills {}  sigterms {} ({} unclean)",
            self.requests,
            self.unanswered_requests,
            self.unavailable,
            self.kills,
            self.terms,
            self.unclean_terms
        )?;
        writeln!(
            f,
            "junk refused {} (missing from the rejected store {})  misplaced {}  stored unanswered {}",
            self.junk_refused, self.junk_missing, self.misplaced, self.stored_unanswered
        )?;
        write!(
            f,
            "database intact {}  tasks compared {} ({} differ)  load took {:.1} s",
            self.intact,
            self.tasks,
            self.task_mismatches.len(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// How the server is stopped at one moment of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Kill,
    Term,
}

/// Runs the plan in a temporary folder and reports what it found. Errors
/// are failures of the harness (the server would not start, the database
/// cannot be read), not broken promises: those are in the report.
pub fn run(plan: &Plan) -> Result<Report> {
    let dir = tempfile::Builder::new()
        .prefix("relaycb-chaos-")
        .tempdir()
        .context("cannot create a temporary folder")?;
    let launch = Launch {
        binary: plan.binary.clone(),
        addr: free_port()?,
        db: dir.path().join("relaycb.db"),
        log: dir.path().join("server.log"),
        // Room for every refused body: the check counts them all.
        extra: vec!["--max-rejected".to_owned(), plan.callbacks.to_string()],
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the clients' runtime")?;
    let result = runtime.block_on(run_async(plan, &launch));
    if result.is_err() {
        eprintln!("server log (last lines):\n{}", server::tail(&launch.log));
    }
    result
}

async fn run_async(plan: &Plan, launch: &Launch) -> Result<Report> {
    let mut rng = Rng::new(plan.seed);
    let ledger = Arc::new(Ledger::new(bodies::generate(
        plan.callbacks,
        plan.tasks,
        rng.next_u64(),
    )));
    let schedule = schedule(plan, &mut rng);
    let mut report = Report::default();

    let first = launch.clone();
    let mut server = tokio::task::spawn_blocking(move || Server::start(&first)).await??;
    let started = Instant::now();
    let load = tokio::spawn(load::drive(
        Arc::clone(&ledger),
        launch.addr,
        "/callback".to_owned(),
        plan.clients,
    ));
    for (at, stop, delay_ms) in schedule {
        while ledger.done.load(Ordering::Relaxed) < at && !load.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        match stop {
            Stop::Kill => {
                tokio::task::spawn_blocking(move || server.kill()).await??;
                report.kills += 1;
            }
            Stop::Term => {
                let status = tokio::task::spawn_blocking(move || server.terminate()).await??;
                report.terms += 1;
                if !status.success() {
                    report.unclean_terms += 1;
                }
            }
        }
        let again = launch.clone();
        server = tokio::task::spawn_blocking(move || Server::start(&again)).await??;
    }
    load.await.context("the clients panicked")?;
    report.elapsed = started.elapsed();

    let live = client::get_json(launch.addr, "/api/tasks").await?;
    let live_listings = client::listings(launch.addr, &live).await?;
    let status = tokio::task::spawn_blocking(move || server.terminate()).await??;
    report.terms += 1;
    if !status.success() {
        report.unclean_terms += 1;
    }
    let db = launch.db.clone();
    let stored = tokio::task::spawn_blocking(move || verify::read_store(&db)).await??;

    // A last start rebuilds the state from the store: it must show the same.
    let again = launch.clone();
    let server = tokio::task::spawn_blocking(move || Server::start(&again)).await??;
    let rebuilt = client::get_json(launch.addr, "/api/tasks").await?;
    let rebuilt_listings = client::listings(launch.addr, &rebuilt).await?;
    let status = tokio::task::spawn_blocking(move || server.terminate()).await??;
    if !status.success() {
        report.unclean_terms += 1;
    }

    tally(&mut report, &ledger, &stored);
    report.tasks = stored.tasks.len() as u64;
    report.task_mismatches = verify::task_mismatches(&stored.tasks, &live);
    report.task_mismatches.extend(
        verify::task_mismatches(&stored.tasks, &rebuilt)
            .into_iter()
            .map(|m| format!("after restart, {m}")),
    );
    report.task_mismatches.extend(verify::listing_mismatches(
        &stored.task_events,
        &live_listings,
    ));
    report.task_mismatches.extend(
        verify::listing_mismatches(&stored.task_events, &rebuilt_listings)
            .into_iter()
            .map(|m| format!("after restart, {m}")),
    );
    Ok(report)
}

/// Compares what each body was answered with what the store holds.
fn tally(report: &mut Report, ledger: &Ledger, stored: &verify::Stored) {
    report.requests = ledger.requests.load(Ordering::Relaxed);
    report.unavailable = ledger.unavailable.load(Ordering::Relaxed);
    report.unanswered_requests = ledger.unanswered.load(Ordering::Relaxed);
    report.intact = stored.intact;
    report.misplaced = stored.foreign;
    for (n, valid, fate) in verify::fates(ledger) {
        let seq = n as u64;
        let events = stored.events.get(&seq).copied().unwrap_or(0);
        let rejected = stored.rejected.get(&seq).copied().unwrap_or(0);
        if !valid {
            if fate != Fate::Unsent {
                report.junk_sent += 1;
            }
            if fate == Fate::Refused {
                report.junk_refused += 1;
                if rejected == 0 {
                    report.junk_missing += 1;
                }
            }
            if events > 0 {
                report.misplaced += 1;
            }
            continue;
        }
        if fate != Fate::Unsent {
            report.sent += 1;
        }
        if rejected > 0 {
            report.misplaced += 1;
        }
        if events > 0 {
            report.stored += 1;
        }
        if events > 1 {
            report.duplicated += 1;
        }
        let deliveries = stored.deliveries.get(&seq).copied().unwrap_or(0);
        if deliveries > i64::from(ledger.attempts(n)) {
            report.overcounted += 1;
        }
        match fate {
            Fate::Answered => {
                report.answered += 1;
                if events == 0 {
                    report.lost += 1;
                }
            }
            Fate::Refused | Fate::GaveUp => {
                report.not_acknowledged += 1;
                if events > 0 {
                    report.stored_unanswered += 1;
                }
            }
            Fate::Unsent => {}
        }
    }
}

/// When to stop the server: after how many bodies are done, how, and how
/// many milliseconds later, so that the moment falls anywhere in a commit.
fn schedule(plan: &Plan, rng: &mut Rng) -> Vec<(usize, Stop, u64)> {
    let n = plan.callbacks as u64;
    let mut stops: Vec<(usize, Stop, u64)> = std::iter::repeat_n(Stop::Kill, plan.kills)
        .chain(std::iter::repeat_n(Stop::Term, plan.terms))
        .map(|stop| {
            // Between 5 % and 95 % of the run.
            let at = n / 20 + rng.below((n * 9 / 10).max(1));
            (at as usize, stop, rng.below(20))
        })
        .collect();
    stops.sort_by_key(|s| s.0);
    stops
}

/// A loopback address with a port that was free a moment ago.
fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    listener.local_addr().context("no local address")
}
