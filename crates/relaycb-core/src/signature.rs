//! The `t`/`sign` pair of CSS callbacks: `sign` is the lower-case hex MD5 of
//! the callback key followed by the decimal `t`, and `t` is the Unix time at
//! which the notification expires.
//!
//! Relay tasks have no key parameter of their own, so relay callbacks
//! usually come unsigned; these checks apply where a key is configured.

use std::fmt;
use std::time::Duration;

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// How long Tencent makes a signature valid for (`t` is send time + this).
pub const SIGNATURE_LIFETIME: Duration = Duration::from_secs(600);

/// Computes `sign` for a key and an expiry time.
pub fn sign(key: &str, t: i64) -> String {
    let mut hasher = Md5::new();
    hasher.update(key.as_bytes());
    hasher.update(t.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// `t` or `sign` is absent (or empty).
    #[error("signature missing: the body has no {0}")]
    Missing(&'static str),
    /// `t` is not a whole number of seconds.
    #[error("signature malformed: t must be a Unix time in seconds")]
    MalformedTime,
    /// `t` is in the past, beyond the allowed clock skew.
    #[error("signature expired: t is {} in the past", crate::span_text(seconds.unsigned_abs()))]
    Expired {
        /// How far past `t` the check was made.
        seconds: i64,
    },
    /// `t` lies further ahead than a signature is ever valid for.
    #[error(
        "signature from the future: t is {} ahead, more than a signature lives ({})",
        crate::span_text(seconds.unsigned_abs()),
        crate::span_text(SIGNATURE_LIFETIME.as_secs())
    )]
    FromTheFuture {
        /// How far ahead `t` is.
        seconds: i64,
    },
    /// `sign` matches no configured key.
    #[error("signature mismatch: sign does not match any configured key")]
    Mismatch,
}

impl SignatureError {
    /// A short snake_case name, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            SignatureError::Missing(_) => "missing",
            SignatureError::MalformedTime => "malformed",
            SignatureError::Expired { .. } => "expired",
            SignatureError::FromTheFuture { .. } => "future",
            SignatureError::Mismatch => "mismatch",
        }
    }
}

/// One or more callback keys; several while a key is being rotated.
#[derive(Clone, Default)]
pub struct KeyRing {
    keys: Vec<String>,
    skew: Duration,
}

impl fmt::Debug for KeyRing {
    // Keys are secrets: show how many there are, never what they are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.keys.len())
            .field("skew", &self.skew)
            .finish()
    }
}

impl KeyRing {
    /// A key ring with the given keys and a clock skew allowance of 60 s.
    pub fn new<I, S>(keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        KeyRing {
            keys: keys
                .into_iter()
                .map(Into::into)
                .filter(|k: &String| !k.is_empty())
                .collect(),
            skew: Duration::from_secs(60),
        }
    }

    /// Sets how far the sender's and receiver's clocks may disagree.
    pub fn with_skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks `t` and `sign` at the Unix time `now`.
    ///
    /// Succeeds if and only if both are present, `t` has not passed by more
    /// than the skew, `t` is not further ahead than a signature's lifetime
    /// plus the skew, and `sign` equals the signature of `t` under one of the
    /// keys (compared in constant time, every key tried).
    pub fn verify(
        &self,
        t: Option<i64>,
        sign: Option<&str>,
        now: i64,
    ) -> Result<(), SignatureError> {
        let t = t.ok_or(SignatureError::Missing("t"))?;
        let sign = sign
            .filter(|s| !s.is_empty())
            .ok_or(SignatureError::Missing("sign"))?;
        let skew = i64::try_from(self.skew.as_secs()).unwrap_or(i64::MAX);
        let late = now.saturating_sub(t);
        if late > skew {
            return Err(SignatureError::Expired { seconds: late });
        }
        let ahead = t.saturating_sub(now);
        let lifetime = SIGNATURE_LIFETIME.as_secs() as i64;
        if ahead > lifetime.saturating_add(skew) {
            return Err(SignatureError::FromTheFuture { seconds: ahead });
        }
        let given = sign.to_ascii_lowercase();
        let mut matched = subtle::Choice::from(0);
        for key in &self.keys {
            let expected = self::sign(key, t);
            // Lengths are public (always 32 hex digits); contents are compared
            // in constant time, and every key is tried.
            matched |= expected.as_bytes().ct_eq(given.as_bytes());
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn sign_is_md5_of_key_then_decimal_t() {
        // md5("key1700000600"), computed independently with coreutils md5sum.
        assert_eq!(
            sign("key", 1_700_000_600),
            "bae57a7a26dc8fe289f922d0ba53dde8"
        );
        assert_eq!(
            sign("abc", 1_545_030_873),
            "38b7762bf69ea8d3297342aa5268b96f"
        );
    }

    #[test]
    fn a_valid_signature_passes_with_any_key_of_the_ring() {
        let ring = KeyRing::new(["old", "new"]);
        let t = NOW + 600;
        assert_eq!(ring.verify(Some(t), Some(&sign("old", t)), NOW), Ok(()));
        assert_eq!(ring.verify(Some(t), Some(&sign("new", t)), NOW), Ok(()));
        assert_eq!(
            ring.verify(Some(t), Some(&sign("new", t).to_uppercase()), NOW),
            Ok(())
        );
    }

    #[test]
    fn each_failed_check_is_named() {
        let ring = KeyRing::new(["key"]).with_skew(Duration::from_secs(30));
        let t = NOW + 600;
        assert_eq!(
            ring.verify(None, Some("x"), NOW),
            Err(SignatureError::Missing("t"))
        );
        assert_eq!(
            ring.verify(Some(t), None, NOW),
            Err(SignatureError::Missing("sign"))
        );
        assert_eq!(
            ring.verify(Some(t), Some(""), NOW),
            Err(SignatureError::Missing("sign"))
        );
        assert_eq!(
            ring.verify(Some(NOW - 31), Some(&sign("key", NOW - 31)), NOW),
            Err(SignatureError::Expired { seconds: 31 })
        );
        assert_eq!(
            ring.verify(Some(NOW - 30), Some(&sign("key", NOW - 30)), NOW),
            Ok(())
        );
        assert_eq!(
            ring.verify(Some(NOW + 631), Some(&sign("key", NOW + 631)), NOW),
            Err(SignatureError::FromTheFuture { seconds: 631 })
        );
        assert_eq!(
            ring.verify(Some(t), Some(&sign("other", t)), NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            ring.verify(Some(t), Some("abc"), NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            ring.verify(Some(t), Some(&sign("key", t + 1)), NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn debug_output_never_shows_keys() {
        let ring = KeyRing::new(["s3cret-key"]);
        assert!(!format!("{ring:?}").contains("s3cret"));
    }
}
