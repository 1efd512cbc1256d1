//! The servers under test, each a child process on a free loopback port
//! with its files in a temporary folder: relaycb-server (release build,
//! real SQLite store, or a PostgreSQL database), the floor (a no-op axum route in this binary, see
//! `floor`) and the Python alternative. Started, waited for, measured
//! (peak RSS from /proc) and stopped with SIGTERM, killed if they linger.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use super::stats::peak_rss_mib;

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// relaycb-server with its durable SQLite store.
    Relaycb,
    /// The no-op route answering `{"code":0}`.
    Floor,
    /// The Python standard-library handler inserting one row per request.
    Python,
}

impl Kind {
    /// The name in reports.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Relaycb => "relaycb (durable)",
            Kind::Floor => "floor (no-op axum)",
            Kind::Python => "Python http.server + sqlite3",
        }
    }
}

/// Paths of what the servers run.
#[derive(Debug, Clone)]
pub(crate) struct Programs {
    /// The release relaycb-server.
    pub(crate) relaycb_server: PathBuf,
    /// This binary (it serves the floor).
    pub(crate) xtask: PathBuf,
    /// A Python 3 interpreter and the handler script, when available.
    pub(crate) python: Option<(PathBuf, PathBuf)>,
}

/// A running server; stopped (and its folder removed) on `stop` or drop.
pub(crate) struct Server {
    child: Child,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Path of its callback endpoint.
    pub(crate) path: &'static str,
    dir: TempDir,
}

impl Server {
    /// Starts a server of `kind` in a fresh temporary folder and waits
    /// until it accepts connections.
    pub(crate) fn start(kind: Kind, programs: &Programs) -> Result<Server> {
        Server::spawn(kind, programs, None)
    }

    /// Starts relaycb-server on the PostgreSQL database at `url` (shared
    /// with whatever else uses it) and waits until it accepts connections.
    pub(crate) fn start_postgres(programs: &Programs, url: &str) -> Result<Server> {
        Server::spawn(Kind::Relaycb, programs, Some(url))
    }

    fn spawn(kind: Kind, programs: &Programs, db: Option<&str>) -> Result<Server> {
        settle_writes()?;
        let dir = tempfile::Builder::new()
            .prefix("relaycb-bench-")
            .tempdir()
            .context("cannot create a temporary folder")?;
        let addr = free_port()?;
        let log =
            File::create(dir.path().join("server.log")).context("cannot create the server log")?;
        let mut command = match kind {
            Kind::Relaycb => {
                let mut c = Command::new(&programs.relaycb_server);
                c.arg("--listen").arg(addr.to_string()).arg("--db");
                match db {
                    Some(url) => c.arg(url),
                    None => c.arg(dir.path().join("relaycb.db")),
                };
                c
            }
            Kind::Floor => {
                let mut c = Command::new(&programs.xtask);
                c.args(["bench-floor", "--listen"]).arg(addr.to_string());
                c
            }
            Kind::Python => {
                let (python, script) = programs
                    .python
                    .as_ref()
                    .context("no Python interpreter was found")?;
                let mut c = Command::new(python);
                c.arg(script)
                    .arg("--port")
                    .arg(addr.port().to_string())
                    .arg("--db")
                    .arg(dir.path().join("alternative.db"));
                c
            }
        };
        command
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cannot share the server log")?)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", kind.label()))?;
        let mut server = Server {
            child,
            addr,
            path: "/callback",
            dir,
        };
        server.wait_listening(kind)?;
        Ok(server)
    }

    fn wait_listening(&mut self, kind: Kind) -> Result<()> {
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait().context("cannot poll a server")? {
                bail!(
                    "{} exited ({status}) before listening; its log:\n{}",
                    kind.label(),
                    self.log_tail()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "{} did not listen on {} within {START_TIMEOUT:?}; its log:\n{}",
                    kind.label(),
                    self.addr,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far, in MiB.
    pub(crate) fn peak_rss_mib(&self) -> Option<f64> {
        peak_rss_mib(self.pid())
    }

    /// The last lines of its log.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Asks the server to stop (SIGTERM), waits, kills it if it lingers.
    pub(crate) fn stop(mut self) -> Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<()> {
        if self.child.try_wait().ok().flatten().is_some() {
            return Ok(());
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let asked = Instant::now();
        while asked.elapsed() < STOP_TIMEOUT {
            if self
                .child
                .try_wait()
                .context("cannot poll a server")?
                .is_some()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child
            .kill()
            .context("cannot kill a lingering server")?;
        self.child.wait().context("cannot reap a server")?;
        bail!("the server did not stop within {STOP_TIMEOUT:?} of SIGTERM and was killed")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A loopback address with a port that was free a moment ago.
fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    listener.local_addr().context("no local address")
}

/// Writes what the page cache holds to disk (`sync`) before a server is
/// started, so that the servers measured, which wait on fsync, do not also
/// wait on the writeback of what came before them: the generated logs are
/// gigabytes, and the server measured before may have left pages behind.
fn settle_writes() -> Result<()> {
    let status = Command::new("sync")
        .status()
        .context("cannot run sync to settle the disk before a measurement")?;
    anyhow::ensure!(status.success(), "sync failed: {status}");
    Ok(())
}
