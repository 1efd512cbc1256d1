//! `relaycb replay`: sends every body of a log to a receiver as Tencent
//! would (POST, JSON, tried again when not answered 200), re-signed with a
//! fresh `t` when a key is given, and reports the answers by status.

use std::sync::mpsc;
use std::time::Duration;

use crate::Status;
use crate::console::Console;
use crate::input::log::{self, Payload};
use crate::send::{self, Name, Outgoing};

/// Arguments of `relaycb replay`.
#[derive(Debug, clap::Args)]
#[command(mut_arg("to", |arg| arg.required(true)))]
pub struct Args {
    /// The log: JSON Lines of bodies, JSON Lines from `relaycb export`, the
    /// server's SQLite file or PostgreSQL URL, or a single body (pretty
    /// printed or not); `-` for standard input.
    pub log: String,
    #[command(flatten)]
    pub send: SendArgs,
}

/// How to send, shared by `replay` and `simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SendArgs {
    /// The receiver's URL (a relaycb-server's callback URL, with its token).
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// At most this many requests a second (default: as fast as answered).
    #[arg(long, value_name = "N")]
    pub rate: Option<f64>,
    /// At most this many requests in flight at once.
    #[arg(long, value_name = "C", default_value_t = 4)]
    pub concurrency: usize,
    /// Sign each attempt with this callback key and a fresh `t` (now + 600 s).
    #[arg(long, env = "RELAYCB_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Seconds to wait for an answer before counting an attempt failed
    /// (Tencent waits 20).
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0)]
    pub timeout: f64,
    /// How many times to try a callback again when it is not answered 200
    /// (Tencent: 12).
    #[arg(long, value_name = "N", default_value_t = 12)]
    pub retries: u32,
    /// Seconds between tries (Tencent: 60).
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub retry_interval: f64,
}

impl SendArgs {
    /// The sender's options, with retry intervals divided by `speed`.
    pub(crate) fn options(&self, url: &str, speed: Option<f64>) -> anyhow::Result<send::Options> {
        let positive = |name: &str, value: f64| {
            if value.is_finite() && value >= 0.0 {
                Ok(value)
            } else {
                Err(crate::UsageError(format!(
                    "{name} must be a number of seconds, at least 0"
                )))
            }
        };
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| crate::UsageError(format!("--to {url:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(
                crate::UsageError(format!("--to {url:?} must be an http or https URL")).into(),
            );
        }
        let speed = speed.unwrap_or(1.0);
        Ok(send::Options {
            url: url.to_owned(),
            rate: self.rate,
            concurrency: self.concurrency.max(1),
            timeout: Duration::from_secs_f64(positive("--timeout", self.timeout)?.max(0.001)),
            retries: self.retries,
            retry_interval: Duration::from_secs_f64(
                positive("--retry-interval", self.retry_interval)? / speed,
            ),
            key: self.key.clone(),
        })
    }
}

/// Sends the log and prints what the receiver answered; fails if any
/// callback was never answered 200.
pub(crate) fn run(args: &Args, console: &mut Console<'_>) -> anyhow::Result<Status> {
    let url = args.send.to.as_deref().expect("clap requires --to");
    let options = args.send.options(url, None)?;
    let (sender, receiver) = mpsc::sync_channel::<Outgoing>(1024);
    let path = args.log.clone();
    let reader = std::thread::spawn(move || {
        log::read(&path, 1024, |records, _| {
            for record in records.iter() {
                let body = records
                    .delivery(record)
                    .map_err(anyhow::Error::msg)?
                    .body
                    .into_owned();
                // A body that does not decode is sent once, that the
                // receiver may keep it, but not again.
                let (task, once) = match send::task_of(&body) {
                    Ok(task) => (task, false),
                    Err(_) => (None, true),
                };
                let name = match record.payload {
                    Payload::Row(_) => Name::Row(record.line),
                    Payload::Body(_) | Payload::Export(_) => Name::Line(record.line),
                };
                sender
                    .send(Outgoing {
                        after: None,
                        body,
                        task,
                        name,
                        once,
                    })
                    .map_err(|_| anyhow::anyhow!("the sender stopped"))?;
            }
            Ok(())
        })
    });
    let mut report = send::send_all(&options, receiver.into_iter(), &mut *console.err)?;
    reader.join().expect("the reader thread never panics")?;
    write!(console.out, "{}", report.render(url))?;
    Ok(if report.given_up == 0 {
        Status::Success
    } else {
        Status::Failure
    })
}
