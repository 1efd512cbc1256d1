//! The deduplication key: what makes two deliveries the same event.
//!
//! Tencent retries a callback that was not answered in time, possibly with
//! a fresh `t` and `sign`. The key is therefore a hash of the body with those
//! two removed, in a canonical form (keys sorted, no insignificant
//! whitespace), so that a retry gives the same key and any other difference
//! gives another.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Category, Error};

/// A 256-bit deduplication key, shown as 64 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DedupKey([u8; 32]);

impl DedupKey {
    /// Computes the key of a callback body.
    ///
    /// Fails if and only if the body is not a JSON object.
    pub fn of_body(bytes: &[u8]) -> Result<DedupKey, Error> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::new(Category::Syntax, None, format!("body is not JSON: {e}")))?;
        DedupKey::of_value(value)
    }

    /// Computes the key of a callback body already parsed as JSON.
    pub fn of_value(value: Value) -> Result<DedupKey, Error> {
        let Value::Object(mut object) = value else {
            return Err(Error::new(
                Category::NotRelay,
                None,
                "expected a JSON object",
            ));
        };
        object.remove("t");
        object.remove("sign");
        let canonical = serde_json::to_vec(&sorted(Value::Object(object)))
            .expect("a JSON value always serialises");
        Ok(DedupKey(Sha256::digest(&canonical).into()))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 8 bytes as a number, for compact in-memory sets.
    pub fn short(&self) -> u64 {
        u64::from_be_bytes(self.0[..8].try_into().expect("8 bytes"))
    }
}

/// The value with every object's keys in sorted order, whichever map type
/// serde_json was built with.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(object) => {
            let mut entries: Vec<(String, Value)> = object.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

impl fmt::Display for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::str::FromStr for DedupKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| {
            Error::new(
                Category::WrongType,
                None,
                format!(
                    "expected a dedup key of 64 hex digits, found {}",
                    crate::error::quote(s)
                ),
            )
        })?;
        Ok(DedupKey(bytes))
    }
}

impl Serialize for DedupKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DedupKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
