//! The server under test: the relaycb-server binary as a child process on
//! a fixed loopback port and database file, started again after each stop
//! so that clients find it at the same address. Its log lines go to one
//! file for the whole run.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long the server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// How to launch the server.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub(crate) binary: PathBuf,
    pub(crate) addr: SocketAddr,
    pub(crate) db: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) extra: Vec<String>,
}

/// A running server.
pub(crate) struct Server {
    child: Child,
}

impl Server {
    /// Starts the server and waits until it accepts connections.
    pub(crate) fn start(launch: &Launch) -> Result<Server> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&launch.log)
            .context("cannot open the server log")?;
        let child = Command::new(&launch.binary)
            .arg("--listen")
            .arg(launch.addr.to_string())
            .arg("--db")
            .arg(&launch.db)
            .args(["--log-format", "json"])
            .args(&launch.extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", launch.binary.display()))?;
        let mut server = Server { child };
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&launch.addr, Duration::from_millis(100)).is_ok() {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait().context("cannot poll the server")? {
                bail!(
                    "the server exited ({status}) before listening; its log:\n{}",
                    tail(&launch.log)
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "the server did not listen on {} within {START_TIMEOUT:?}",
                    launch.addr
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL: the process ends at once, whatever it was doing.
    pub(crate) fn kill(mut self) -> Result<()> {
        self.child.kill().context("cannot kill the server")?;
        self.child.wait().context("cannot reap the server")?;
        Ok(())
    }

    /// SIGTERM, then waits for the process to end; its exit status.
    pub(crate) fn terminate(mut self) -> Result<ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("cannot run kill")?;
        if !sent.success() {
            bail!("kill -TERM {pid} failed ({sent})");
        }
        let asked = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().context("cannot poll the server")? {
                return Ok(status);
            }
            if asked.elapsed() > STOP_TIMEOUT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("the server did not stop within {STOP_TIMEOUT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
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

/// The last lines of the log.
pub(crate) fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
