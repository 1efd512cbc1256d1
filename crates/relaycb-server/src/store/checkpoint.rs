//! Checkpoints of the SQLite write-ahead log on a thread of their own.
//!
//! SQLite folds the WAL back into the database file (a checkpoint) inside
//! the commit that crosses `wal_autocheckpoint` pages, so one batch in a
//! thousand paid for copying and syncing the pages of all the others while
//! its callers waited. Here a thread with its own connection runs a passive
//! checkpoint every [`INTERVAL`], which never blocks the writer or the
//! readers; the writer keeps a far larger automatic threshold
//! ([`WRITER_AUTOCHECKPOINT_PAGES`]) only as a backstop, should this thread
//! fall behind or fail.
//!
//! A checkpoint only copies what is already durable in the WAL, so it can
//! be interrupted at any point without loss.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;

/// How often the WAL is checkpointed: often, so that each checkpoint copies
/// and syncs little. At 200 ms a checkpoint under load copied tens of MB,
/// and the writer's own sync of the WAL, waiting behind it for the disk,
/// took 5 to 30 ms instead of well under one, the slowest answers' time.
pub(crate) const INTERVAL: Duration = Duration::from_millis(20);
/// The writer's own `wal_autocheckpoint`, in pages: about 64 MiB of WAL.
pub(crate) const WRITER_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// The checkpoint thread; stopped when dropped.
pub(crate) struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database that `conn` is connected to.
    pub(crate) fn start(conn: Connection) -> Result<Checkpointer, StoreError> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("relaycb-checkpoint".into())
            .spawn(move || run(&conn, &flag))
            .map_err(StoreError::Thread)?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread after the checkpoint it may be running.
    pub(crate) fn stop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("the checkpoint thread panicked");
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(conn: &Connection, stop: &(Mutex<bool>, Condvar)) {
    let (stopped, wake) = stop;
    let mut failing = false;
    loop {
        {
            let guard = stopped.lock().unwrap_or_else(|p| p.into_inner());
            let (guard, _) = wake
                .wait_timeout_while(guard, INTERVAL, |stopped| !*stopped)
                .unwrap_or_else(|p| p.into_inner());
            if *guard {
                return;
            }
        }
        match checkpoint(conn) {
            Ok((wal_pages, copied)) => {
                if failing {
                    tracing::info!("checkpoints work again");
                    failing = false;
                }
                tracing::trace!(wal_pages, copied, "checkpoint");
            }
            Err(error) => {
                // Said once per outage; the writer's backstop still holds.
                if !failing {
                    tracing::warn!(%error, "checkpoint failed; retrying");
                    failing = true;
                }
            }
        }
    }
}

/// One passive checkpoint: the WAL's size and how much of it is now in the
/// database file, in pages.
fn checkpoint(conn: &Connection) -> Result<(i64, i64), rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

/// Opens the checkpoint thread's connection to `path`.
pub(crate) fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn what_the_writer_commits_reaches_the_database_file_without_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let writer = Connection::open(&path).unwrap();
        let _: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer
            .execute_batch(
                "CREATE TABLE t (x BLOB);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
                 INSERT INTO t SELECT randomblob(1000) FROM n;",
            )
            .unwrap();
        let file_len = || std::fs::metadata(&path).unwrap().len();
        let before = file_len();
        assert!(
            before < 100_000,
            "the writer checkpointed itself: {before} bytes"
        );

        let mut checkpointer = Checkpointer::start(connect(&path).unwrap()).unwrap();
        let begun = Instant::now();
        while file_len() < 200_000 && begun.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(INTERVAL / 4);
        }
        assert!(
            file_len() >= 200_000,
            "{} bytes after a checkpoint",
            file_len()
        );
        checkpointer.stop();
        assert!(checkpointer.thread.is_none());
    }
}
