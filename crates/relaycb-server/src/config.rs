//! The server's configuration: command-line flags, each with a `RELAYCB_*`
//! environment equivalent, defaults that run on a laptop, and the checks
//! made before anything starts.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};

/// Receives Tencent Cloud CSS relay callbacks (event_type 314), stores each
/// one durably before answering 200, and serves what every relay task is
/// doing over a JSON API.
#[derive(Clone, Parser)]
#[command(name = "relaycb-server", version, about, long_about = None)]
pub struct Config {
    /// Address and port to listen on (`0.0.0.0:8080` for every interface; a
    /// host name is looked up once, at start). Anything beyond loopback
    /// should be protected with --callback-token and --api-token.
    #[arg(
        long,
        env = "RELAYCB_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR:PORT",
        value_parser = parse_listen
    )]
    pub listen: SocketAddr,

    /// Where events are stored: a SQLite file (created if missing), or a
    /// `postgres://` (or `postgresql://`) URL so that several servers share
    /// one database. Migrated on start either way.
    #[arg(
        long,
        env = "RELAYCB_DB",
        value_name = "PATH|URL",
        default_value = "relaycb.db",
        value_parser = DatabaseParser,
        hide_env_values = true
    )]
    pub db: Database,

    /// Path of the callback endpoint: the path of the task's CallbackUrl.
    #[arg(
        long,
        env = "RELAYCB_CALLBACK_PATH",
        value_name = "PATH",
        default_value = "/callback"
    )]
    pub callback_path: String,

    /// Secret that must appear as `?token=` in the callback URL; callbacks
    /// without it are refused with 401.
    #[arg(
        long,
        env = "RELAYCB_CALLBACK_TOKEN",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub callback_token: Option<String>,

    /// Callback key used to verify `t`/`sign` when a body carries them.
    /// Repeat the flag (or separate with commas in the environment) to
    /// accept several keys while rotating.
    #[arg(
        long = "callback-key",
        value_name = "KEY",
        env = "RELAYCB_CALLBACK_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub callback_keys: Vec<String>,

    /// Refuse callbacks that carry no valid `t`/`sign` (needs --callback-key).
    #[arg(long, env = "RELAYCB_REQUIRE_SIGNATURE")]
    pub require_signature: bool,

    /// How far the sender's clock may be from ours when checking `t`
    /// (for example `60s`, `2m`).
    #[arg(long, env = "RELAYCB_CLOCK_SKEW", default_value = "60s", value_parser = humantime::parse_duration)]
    pub clock_skew: Duration,

    /// Bearer token required by the /api routes; without it they are open.
    #[arg(
        long,
        env = "RELAYCB_API_TOKEN",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub api_token: Option<String>,

    /// Largest callback body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "RELAYCB_MAX_BODY", value_name = "BYTES", default_value_t = 64 * 1024)]
    pub max_body: usize,

    /// How long a callback body may take to arrive (for example `10s`); a
    /// slower sender gets 408 and what it sent is kept as refused.
    #[arg(long, env = "RELAYCB_BODY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,

    /// How long a request's headers may take to arrive, and how long an
    /// idle keep-alive connection stays open.
    #[arg(long, env = "RELAYCB_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,

    /// Most connections open at once; more are closed on arrival.
    #[arg(long, env = "RELAYCB_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// How many refused callbacks to keep; the oldest are dropped first and
    /// counted.
    #[arg(long, env = "RELAYCB_MAX_REJECTED", default_value_t = 10_000)]
    pub max_rejected: u64,

    /// NATS server to publish every newly stored event to, as a CloudEvents
    /// JSON message on JetStream (for example `nats://127.0.0.1:4222`).
    /// Events stored while this is unset are not published later.
    #[arg(long, env = "RELAYCB_NATS_URL", value_name = "URL")]
    pub nats_url: Option<String>,

    /// JetStream stream that receives the events; created if missing, with
    /// the subjects `<--nats-subject-prefix>.>`.
    #[arg(
        long,
        env = "RELAYCB_NATS_STREAM",
        value_name = "NAME",
        default_value = "RELAYCB"
    )]
    pub nats_stream: String,

    /// First tokens of every subject published:
    /// `<prefix>.<appid>.<task_id>.<event>`.
    #[arg(
        long,
        env = "RELAYCB_NATS_SUBJECT_PREFIX",
        value_name = "PREFIX",
        default_value = "relaycb"
    )]
    pub nats_subject_prefix: String,

    /// Longest wait between two attempts to publish while NATS fails; the
    /// wait doubles from 100ms up to this.
    #[arg(long, env = "RELAYCB_NATS_RETRY_MAX", default_value = "30s", value_parser = humantime::parse_duration)]
    pub nats_retry_max: Duration,

    /// Log format on standard error.
    #[arg(long, env = "RELAYCB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

/// The store the server writes to, chosen by the form of `--db`.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// An embedded SQLite file: nothing to install, one server per file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, which several servers may share. The URL is
    /// kept whole (it may hold a password); [`Database`]'s `Display` and
    /// `Debug` show it without the password.
    Postgres(String),
}

impl Database {
    /// `postgres://...` or `postgresql://...` selects PostgreSQL; anything
    /// else is a SQLite path.
    pub fn parse(value: &str) -> Result<Database, String> {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            relaycb_pg::Store::parse(value)
                .map_err(|e| format!("not a usable PostgreSQL URL: {e}"))?;
            Ok(Database::Postgres(value.to_owned()))
        } else if value.is_empty() {
            Err("the database path must not be empty".to_owned())
        } else {
            Ok(Database::Sqlite(PathBuf::from(value)))
        }
    }

    /// Whether other servers may write to the same store.
    pub fn is_shared(&self) -> bool {
        matches!(self, Database::Postgres(_))
    }
}

/// `--db` for clap: [`Database::parse`], with an error that shows the value
/// without its password (clap's own would repeat it whole).
#[derive(Clone)]
struct DatabaseParser;

impl clap::builder::TypedValueParser for DatabaseParser {
    type Value = Database;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Database, clap::Error> {
        let invalid = |text: String| {
            clap::Error::raw(clap::error::ErrorKind::InvalidValue, format!("{text}\n"))
                .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| invalid("--db must be valid UTF-8".to_owned()))?;
        Database::parse(text).map_err(|reason| {
            invalid(format!(
                "invalid value '{}' for '--db <PATH|URL>': {reason}",
                relaycb_core::redact_url(text)
            ))
        })
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres(url) => f.write_str(&relaycb_core::redact_url(url)),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Database::Postgres(url) => f
                .debug_tuple("Postgres")
                .field(&relaycb_core::redact_url(url))
                .finish(),
        }
    }
}

/// `--listen`: an address and port, or a host name and port looked up now
/// (the first address it has).
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs as _;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let expected =
        "expected an address and port such as 127.0.0.1:8080, 0.0.0.0:8080 or localhost:8080";
    if text
        .rsplit_once(':')
        .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
    {
        return Err(format!("{expected}, found {text:?}"));
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{text:?} names no address")),
        Err(error) => Err(format!("cannot look up {text:?}: {error} ({expected})")),
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// Checks what clap cannot: combinations of flags.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.callback_path.starts_with('/') {
            bail!(
                "--callback-path must start with `/`, found {:?}",
                self.callback_path
            );
        }
        if self.callback_path.starts_with("/api/")
            || ["/healthz", "/readyz", "/metrics"].contains(&self.callback_path.as_str())
        {
            bail!(
                "--callback-path {:?} collides with a route of the server",
                self.callback_path
            );
        }
        if self.require_signature && self.callback_keys.iter().all(String::is_empty) {
            bail!("--require-signature needs at least one --callback-key");
        }
        if self.max_body == 0 {
            bail!("--max-body must be at least 1 byte");
        }
        if self.body_timeout.is_zero() || self.header_timeout.is_zero() {
            bail!("--body-timeout and --header-timeout must be longer than zero");
        }
        if self.max_connections == 0 {
            bail!("--max-connections must be at least 1");
        }
        if self.callback_token.as_deref() == Some("") {
            bail!("--callback-token must not be empty");
        }
        if self.api_token.as_deref() == Some("") {
            bail!("--api-token must not be empty");
        }
        if let Some(url) = &self.nats_url {
            if url.is_empty() {
                bail!("--nats-url must not be empty");
            }
            // Checked here, before the store is opened, as the rest; the
            // error of the client names no secret, but the URL may.
            if let Err(error) = url.parse::<async_nats::ServerAddr>() {
                bail!("--nats-url is not a NATS address: {error}");
            }
        }
        // JetStream names may not hold what subjects and file names use.
        let bad_name = |c: char| c.is_whitespace() || ".*>/\\".contains(c);
        if self.nats_stream.is_empty() || self.nats_stream.contains(bad_name) {
            bail!(
                "--nats-stream {:?} must be non-empty, without whitespace, `.`, `*`, `>`, `/` or `\\`",
                self.nats_stream
            );
        }
        let bad_token = |t: &str| {
            t.is_empty() || t.contains(|c: char| c.is_whitespace() || c == '*' || c == '>')
        };
        if self.nats_subject_prefix.split('.').any(bad_token) {
            bail!(
                "--nats-subject-prefix {:?} must be dot-separated non-empty tokens without whitespace, `*` or `>`",
                self.nats_subject_prefix
            );
        }
        if self.nats_retry_max.is_zero() {
            bail!("--nats-retry-max must be longer than zero");
        }
        Ok(())
    }

    /// Whether the listen address is reachable from beyond this machine.
    pub fn listens_beyond_loopback(&self) -> bool {
        !self.listen.ip().is_loopback()
    }
}

// Secrets are shown as set or not, never by value.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &Option<String>| if s.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("db", &self.db)
            .field("callback_path", &self.callback_path)
            .field("callback_token", &secret(&self.callback_token))
            .field("callback_keys", &self.callback_keys.len())
            .field("require_signature", &self.require_signature)
            .field("clock_skew", &self.clock_skew)
            .field("api_token", &secret(&self.api_token))
            .field("max_body", &self.max_body)
            .field("body_timeout", &self.body_timeout)
            .field("header_timeout", &self.header_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_rejected", &self.max_rejected)
            .field("nats_url", &self.nats_url.as_ref().map(|_| "<set>"))
            .field("nats_stream", &self.nats_stream)
            .field("nats_subject_prefix", &self.nats_subject_prefix)
            .field("nats_retry_max", &self.nats_retry_max)
            .field("log_format", &self.log_format)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_on_a_laptop() {
        let config = Config::parse_from(["relaycb-server"]);
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.db, Database::Sqlite(PathBuf::from("relaycb.db")));
        assert_eq!(config.callback_path, "/callback");
        assert_eq!(config.max_body, 65_536);
        assert_eq!(config.clock_skew, Duration::from_secs(60));
        config.validate().unwrap();
        assert!(!config.listens_beyond_loopback());
    }

    #[test]
    fn listen_takes_an_address_or_a_host_name_and_says_what_it_expects() {
        let listen = |text: &str| Config::try_parse_from(["relaycb-server", "--listen", text]);
        assert_eq!(
            listen("0.0.0.0:9000").unwrap().listen,
            "0.0.0.0:9000".parse().unwrap()
        );
        assert!(listen("localhost:9000").unwrap().listen.ip().is_loopback());
        for bad in ["localhost", "8080", ":8080", "127.0.0.1:http"] {
            let error = listen(bad).err().unwrap().to_string();
            assert!(
                error.contains("expected an address and port such as 127.0.0.1:8080"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn callback_key_repeats_and_debug_hides_secrets() {
        let config = Config::parse_from([
            "relaycb-server",
            "--callback-key",
            "k1-secret",
            "--callback-key",
            "k2-secret",
            "--api-token",
            "api-secret",
        ]);
        assert_eq!(config.callback_keys, ["k1-secret", "k2-secret"]);
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn zero_limits_are_refused() {
        for flags in [
            ["--body-timeout", "0s"],
            ["--header-timeout", "0s"],
            ["--max-connections", "0"],
        ] {
            let config = Config::parse_from(["relaycb-server", flags[0], flags[1]]);
            assert!(config.validate().is_err(), "{flags:?}");
        }
    }

    #[test]
    fn a_postgres_url_selects_postgres_and_never_shows_its_password() {
        let config = Config::parse_from([
            "relaycb-server",
            "--db",
            "postgres://relay:hunter2@db.internal:5432/relaycb?sslmode=disable&password=hunter2",
        ]);
        assert!(config.db.is_shared());
        let shown = format!("{} {config:?}", config.db);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("relay:***@db.internal:5432/relaycb"),
            "{shown}"
        );
        let sqlite = Config::parse_from(["relaycb-server", "--db", "./postgres.db"]);
        assert_eq!(sqlite.db, Database::Sqlite(PathBuf::from("./postgres.db")));
        assert!(Database::parse("postgresql://x/y?connect_timeout=nope").is_err());
        assert!(Database::parse("postgres://x/y?sslmode=verify-full").is_ok());
        let refused = Database::parse("postgres://x/y?sslmode=verify-ca").unwrap_err();
        assert!(
            refused.contains("sslmode \"verify-ca\" is not supported"),
            "{refused}"
        );
        // Refused while the arguments are read: the message hides the
        // password as the logs do.
        let refused = Config::try_parse_from([
            "relaycb-server",
            "--db",
            "postgres://relay:hunter2@db.internal/relaycb?sslmode=verify-ca&password=hunter2",
        ])
        .unwrap_err()
        .to_string();
        assert!(!refused.contains("hunter2"), "{refused}");
        assert!(refused.contains("relay:***@db.internal"), "{refused}");
        assert!(refused.contains("verify-ca"), "{refused}");
    }

    #[test]
    fn a_nats_url_is_checked_with_the_other_flags() {
        let check = |url: &str| {
            Config::parse_from(["relaycb-server", "--nats-url", url])
                .validate()
                .map_err(|e| e.to_string())
        };
        assert!(check("nats://127.0.0.1:4222").is_ok());
        assert!(check("nats://token@nats.internal").is_ok());
        let refused = check("nats://s3cret@h:4299,nats://b@h:4298").unwrap_err();
        assert!(
            refused.contains("--nats-url is not a NATS address"),
            "{refused}"
        );
        assert!(!refused.contains("s3cret"), "{refused}");
    }

    #[test]
    fn nats_names_that_subjects_cannot_hold_are_refused() {
        let with = |flag: &str, value: &str| {
            Config::parse_from(["relaycb-server", flag, value])
                .validate()
                .is_ok()
        };
        assert!(with("--nats-stream", "RELAYCB_TEST"));
        assert!(!with("--nats-stream", "a.b"));
        assert!(!with("--nats-stream", "a b"));
        assert!(with("--nats-subject-prefix", "css.relay"));
        assert!(!with("--nats-subject-prefix", "css..relay"));
        assert!(!with("--nats-subject-prefix", "css.>"));
        assert!(!with("--nats-subject-prefix", ""));
        assert!(!with("--nats-url", ""));
    }

    #[test]
    fn require_signature_without_a_key_is_refused() {
        let config = Config::parse_from(["relaycb-server", "--require-signature"]);
        assert!(config.validate().is_err());
    }
}
