//! How relaycb connects to its PostgreSQL store, shared by the server and
//! the command line: the store URL, and TLS as the URL's `sslmode` asks.
//!
//! `sslmode` follows libpq where it can:
//! - `disable` and `prefer` (the default) connect without TLS (libpq's
//!   `prefer` tries TLS first; here it is plain, as it always was);
//! - `require` encrypts the connection but, as libpq does when it has no
//!   root certificate, takes whatever certificate the server shows: it
//!   keeps the traffic from being read on the way, not from a server that
//!   pretends to be the database;
//! - `verify-full` also checks the certificate against the system's root
//!   certificates (or those that `SSL_CERT_FILE` or `SSL_CERT_DIR` name)
//!   and the host name in the URL.
//!
//! `verify-ca` and any other mode are refused rather than taken as
//! something else.

use std::sync::Arc;

use postgres::NoTls;
use postgres::config::SslMode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// What can be wrong with a store URL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL does not parse (`postgres` names the part, in its causes).
    #[error("{}", describe(.0))]
    Url(postgres::Error),
    /// An `sslmode` that relaycb does not implement.
    #[error(
        "sslmode {0:?} is not supported: use disable, prefer, require (encrypted) or \
         verify-full (encrypted, certificate and host checked)"
    )]
    SslMode(String),
    /// The TLS configuration could not be built.
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// `verify-full` without a single usable root certificate.
    #[error(
        "sslmode verify-full needs root certificates, and none could be read from the \
         system's store (SSL_CERT_FILE or SSL_CERT_DIR name others)"
    )]
    NoRoots,
}

// Not `#[from]`: the message holds the causes already, so the error is
// given as no source, which would print them twice in a chain.
impl From<postgres::Error> for Error {
    fn from(error: postgres::Error) -> Error {
        Error::Url(error)
    }
}

/// What the PostgreSQL client says, whole, on one line: the server's own
/// message when the server refused (`FATAL: database "x" does not exist`),
/// else the client's words and their causes (`invalid connection string:
/// unknown option`, `error connecting to server: Connection refused`).
pub fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return db.to_string();
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain TCP (`disable`, `prefer`).
    Off,
    /// TLS, any certificate taken (`require`).
    Encrypted,
    /// TLS, certificate checked against the system's roots and the host
    /// (`verify-full`).
    Verified,
}

impl Tls {
    /// As logged: `off`, or the `sslmode` that asked for TLS.
    pub fn as_str(self) -> &'static str {
        match self {
            Tls::Off => "off",
            Tls::Encrypted => "require",
            Tls::Verified => "verify-full",
        }
    }
}

/// A PostgreSQL store to connect to, as often as needed.
#[derive(Clone)]
pub struct Store {
    config: postgres::Config,
    tls: Tls,
    connector: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds the password; it prints it redacted.
        f.debug_struct("Store")
            .field("config", &self.config)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Reads a store URL (`postgres://user:password@host:port/db?...`).
    pub fn parse(url: &str) -> Result<Store, Error> {
        let (url, verify) = take_verify_full(url)?;
        let config: postgres::Config = url.parse()?;
        let tls = match config.get_ssl_mode() {
            SslMode::Require if verify => Tls::Verified,
            SslMode::Require => Tls::Encrypted,
            _ => Tls::Off,
        };
        let connector = match tls {
            Tls::Off => None,
            Tls::Encrypted => Some(MakeRustlsConnect::new(encrypt_only()?)),
            Tls::Verified => Some(MakeRustlsConnect::new(verified()?)),
        };
        Ok(Store {
            config,
            tls,
            connector,
        })
    }

    /// The parsed URL.
    pub fn config(&self) -> &postgres::Config {
        &self.config
    }

    /// How connections are protected.
    pub fn tls(&self) -> Tls {
        self.tls
    }

    /// Opens a connection.
    pub fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        match &self.connector {
            None => self.config.connect(NoTls),
            Some(connector) => self.config.connect(connector.clone()),
        }
    }
}

/// The URL with `sslmode=verify-full` read as `require` (all that the
/// client library knows), and whether it was there. Refuses the modes it
/// does not implement (`verify-ca`, a misspelling) by name.
fn take_verify_full(url: &str) -> Result<(String, bool), Error> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), false));
    };
    let mut verify = false;
    let mut parts = Vec::new();
    for part in query.split('&') {
        match part.split_once('=') {
            // The last `sslmode` counts, as for libpq.
            Some(("sslmode", "verify-full")) => {
                verify = true;
                parts.push("sslmode=require");
            }
            Some(("sslmode", "disable" | "prefer" | "require")) => {
                verify = false;
                parts.push(part);
            }
            None => parts.push(part),
            Some(("sslmode", mode)) => return Err(Error::SslMode(mode.to_owned())),
            Some(_) => parts.push(part),
        }
    }
    Ok((format!("{base}?{}", parts.join("&")), verify))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS that takes any certificate, still checking that the server holds
/// the key of the one it shows.
fn encrypt_only() -> Result<ClientConfig, Error> {
    let provider = provider();
    Ok(ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth())
}

/// TLS that checks the certificate against the system's roots.
fn verified() -> Result<ClientConfig, Error> {
    let mut roots = RootCertStore::empty();
    let (added, _) =
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if added == 0 {
        return Err(Error::NoRoots);
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `sslmode=require`: the certificate is not checked, the handshake's
/// signatures are.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::{Error, Store, Tls};

    #[test]
    fn sslmode_chooses_how_the_connection_is_protected() {
        let tls = |url: &str| Store::parse(url).unwrap().tls();
        assert_eq!(tls("postgres://u@h/db"), Tls::Off);
        assert_eq!(tls("postgres://u@h/db?sslmode=disable"), Tls::Off);
        assert_eq!(tls("postgres://u@h/db?sslmode=prefer"), Tls::Off);
        assert_eq!(tls("postgres://u@h/db?sslmode=require"), Tls::Encrypted);
        assert_eq!(
            tls("postgres://u@h/db?application_name=x&sslmode=verify-full&connect_timeout=5"),
            Tls::Verified
        );
    }

    #[test]
    fn the_last_sslmode_counts() {
        let tls = |url: &str| Store::parse(url).unwrap().tls();
        assert_eq!(
            tls("postgres://u@h/db?sslmode=verify-full&sslmode=require"),
            Tls::Encrypted
        );
        assert_eq!(
            tls("postgres://u@h/db?sslmode=require&sslmode=verify-full"),
            Tls::Verified
        );
        assert_eq!(
            tls("postgres://u@h/db?sslmode=require&sslmode=disable"),
            Tls::Off
        );
    }

    #[test]
    fn an_unknown_option_is_named() {
        let error = Store::parse("postgres://u@h/db?sslrootcert=/ca.pem").unwrap_err();
        assert!(error.to_string().contains("sslrootcert"), "{error}");
    }

    #[test]
    fn verify_full_keeps_the_rest_of_the_url() {
        let store =
            Store::parse("postgres://u:pw@h:5433/db?application_name=relaycb&sslmode=verify-full")
                .unwrap();
        let config = store.config();
        assert_eq!(config.get_dbname(), Some("db"));
        assert_eq!(config.get_application_name(), Some("relaycb"));
        assert_eq!(config.get_ports(), [5433]);
    }

    #[test]
    fn verify_ca_and_unknown_modes_are_refused_by_name() {
        let error = Store::parse("postgres://u@h/db?sslmode=verify-ca").unwrap_err();
        assert!(matches!(&error, Error::SslMode(mode) if mode == "verify-ca"));
        assert!(error.to_string().contains("verify-full"), "{error}");
        let error = Store::parse("postgres://u@h/db?sslmode=sometimes").unwrap_err();
        assert!(matches!(&error, Error::SslMode(mode) if mode == "sometimes"));
    }
}
