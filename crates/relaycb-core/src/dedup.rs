//! The deduplication key: what makes two deliveries the same event.
//!
//! Tencent retries a callback that was not answered in time, possibly with
//! a fresh `t` and `sign`. The key is therefore a hash of the body with those
//! two removed, in a canonical form (keys sorted, no insignificant
//! whitespace), so that a retry gives the same key and any other difference
//! gives another.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Category, Error};
use crate::flat::Member;

/// A 256-bit deduplication key, shown as 64 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DedupKey([u8; 32]);

impl DedupKey {
    /// Computes the key of a callback body.
    ///
    /// Fails if and only if the body is not a JSON object.
    pub fn of_body(bytes: &[u8]) -> Result<DedupKey, Error> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let fast = crate::fast::with_parser(bytes, |input, buffers| {
            let value = simd_json::borrowed::to_value_with_buffers(input, buffers).ok()?;
            Some(match value {
                simd_json::BorrowedValue::Object(object) => Ok(canonical_hash(|h| {
                    h.object(object.iter().filter(|(k, _)| !is_signature(k)), hash_simd);
                })),
                _ => Err(not_an_object()),
            })
        });
        if let Some(key) = fast {
            return key;
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::new(Category::Syntax, None, format!("body is not JSON: {e}")))?;
        DedupKey::of_value(value)
    }

    /// Computes the key of a body from its top-level members as the flat
    /// parser read them, in the order they came, when the raw text of every
    /// value that counts is its canonical form; `None` otherwise, when
    /// [`DedupKey::of_body`] has to parse the body again.
    pub(crate) fn of_members(members: &[Member<'_>]) -> Option<DedupKey> {
        let mut entries = Vec::with_capacity(members.len());
        let mut length = 2;
        for member in members.iter().filter(|m| !is_signature(&m.key)) {
            if !member.canonical {
                return None;
            }
            length += member.key.len() + member.raw.len() + 4;
            entries.push((member.key.as_ref(), member));
        }
        sort_entries(&mut entries);
        // Written out whole and hashed at once, which costs less than
        // hashing it piece by piece as `Canonical` does.
        let mut text = Vec::with_capacity(length);
        text.push(b'{');
        for (i, (key, member)) in entries.into_iter().enumerate() {
            if i > 0 {
                text.push(b',');
            }
            match &member.key {
                // Without escapes, a key is written as it is.
                Cow::Borrowed(key) => {
                    text.push(b'"');
                    text.extend_from_slice(key.as_bytes());
                    text.push(b'"');
                }
                Cow::Owned(_) => {
                    serde_json::to_writer(&mut text, key).expect("writing to memory does not fail");
                }
            }
            text.push(b':');
            text.extend_from_slice(member.raw.as_bytes());
        }
        text.push(b'}');
        Some(DedupKey(Sha256::digest(&text).into()))
    }

    /// Computes the key of a callback body already parsed as JSON.
    pub fn of_value(value: Value) -> Result<DedupKey, Error> {
        let Value::Object(object) = value else {
            return Err(not_an_object());
        };
        Ok(canonical_hash(|h| {
            h.object(object.iter().filter(|(k, _)| !is_signature(k)), hash_serde);
        }))
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

fn not_an_object() -> Error {
    Error::new(Category::NotRelay, None, "expected a JSON object")
}

fn is_signature(key: &str) -> bool {
    key == "t" || key == "sign"
}

/// SHA-256 of a value's canonical JSON: compact, object keys sorted, strings
/// escaped as serde_json escapes them, written straight into the hasher.
/// Both parsers' values hash alike through it.
fn canonical_hash(write: impl FnOnce(&mut Canonical)) -> DedupKey {
    let mut canonical = Canonical(Sha256::new());
    write(&mut canonical);
    DedupKey(canonical.0.finalize().into())
}

struct Canonical(Sha256);

impl Canonical {
    fn raw(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn string(&mut self, s: &str) {
        serde_json::to_writer(&mut *self, s).expect("hashing does not fail");
    }

    fn float(&mut self, f: f64) {
        match serde_json::Number::from_f64(f) {
            Some(n) => self.raw(n.to_string().as_bytes()),
            None => self.raw(b"null"),
        }
    }

    fn object<'v, K: AsRef<str> + 'v, V: 'v>(
        &mut self,
        entries: impl Iterator<Item = (&'v K, &'v V)>,
        value: fn(&mut Canonical, &V),
    ) {
        let mut entries: Vec<(&str, &V)> = entries.map(|(k, v)| (k.as_ref(), v)).collect();
        sort_entries(&mut entries);
        self.raw(b"{");
        for (i, (key, v)) in entries.into_iter().enumerate() {
            if i > 0 {
                self.raw(b",");
            }
            self.string(key);
            self.raw(b":");
            value(self, v);
        }
        self.raw(b"}");
    }

    fn array<'v, V: 'v>(
        &mut self,
        items: impl Iterator<Item = &'v V>,
        value: fn(&mut Canonical, &V),
    ) {
        self.raw(b"[");
        for (i, v) in items.enumerate() {
            if i > 0 {
                self.raw(b",");
            }
            value(self, v);
        }
        self.raw(b"]");
    }
}

impl std::io::Write for Canonical {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sorts an object's entries by key, keeping only the last of each
/// repeated key.
fn sort_entries<V>(entries: &mut Vec<(&str, V)>) {
    // A stable sort keeps repeated keys in document order; the last one
    // counts, as it does when decoding (simd-json keeps every repeat).
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries.reverse();
    entries.dedup_by(|later, earlier| later.0 == earlier.0);
    entries.reverse();
}

fn hash_serde(h: &mut Canonical, value: &Value) {
    match value {
        Value::Null => h.raw(b"null"),
        Value::Bool(b) => h.raw(if *b { b"true" } else { b"false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => h.raw(i.to_string().as_bytes()),
            (None, Some(u), _) => h.raw(u.to_string().as_bytes()),
            (None, None, Some(f)) => h.float(f),
            (None, None, None) => h.raw(n.to_string().as_bytes()),
        },
        Value::String(s) => h.string(s),
        Value::Array(items) => h.array(items.iter(), hash_serde),
        Value::Object(object) => h.object(object.iter(), hash_serde),
    }
}

fn hash_simd(h: &mut Canonical, value: &simd_json::BorrowedValue<'_>) {
    use simd_json::{BorrowedValue, StaticNode};
    match value {
        BorrowedValue::Static(StaticNode::Null) => h.raw(b"null"),
        BorrowedValue::Static(StaticNode::Bool(b)) => h.raw(if *b { b"true" } else { b"false" }),
        BorrowedValue::Static(StaticNode::I64(i)) => h.raw(i.to_string().as_bytes()),
        BorrowedValue::Static(StaticNode::U64(u)) => h.raw(u.to_string().as_bytes()),
        BorrowedValue::Static(StaticNode::F64(f)) => h.float(*f),
        BorrowedValue::String(s) => h.string(s),
        BorrowedValue::Array(items) => h.array(items.iter(), hash_simd),
        BorrowedValue::Object(object) => h.object(object.iter(), hash_simd),
    }
}

impl fmt::Display for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; 64];
        hex::encode_to_slice(self.0, &mut text).expect("64 digits for 32 bytes");
        f.write_str(std::str::from_utf8(&text).expect("hex digits are ASCII"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    fn both(bytes: &[u8]) -> (DedupKey, DedupKey) {
        let fast = DedupKey::of_body(bytes).unwrap();
        let slow = DedupKey::of_value(serde_json::from_slice(bytes).unwrap()).unwrap();
        (fast, slow)
    }

    #[test]
    fn both_parsers_give_the_same_key() {
        for body in [
            &br#"{"b":1,"a":[1,-2,3.5,"x\u0000y",{"z":null,"y":true}],"t":5,"sign":"s"}"#[..],
            br#"{"callback_event":"TaskStart","msg":"{\"task_start_time\":0}","big":18446744073709551615}"#,
            br#"{"emoji":"\ud83d\ude00","tab":"\t","slash":"\/","e":1e3}"#,
            br#"{"task_id":"1","a":2,"task_id":"2"}"#,
        ] {
            let (fast, slow) = both(body);
            assert_eq!(fast, slow, "{}", String::from_utf8_lossy(body));
        }
    }

    proptest::proptest! {
        /// Bodies written by hand as text, so that keys may repeat and
        /// numbers and escapes take every form.
        #[test]
        fn both_parsers_agree_on_generated_bodies(
            fields in proptest::collection::vec(
                ("[a-c]{1,2}", proptest::prop_oneof![
                    proptest::num::i64::ANY.prop_map(|n| n.to_string()),
                    proptest::num::u64::ANY.prop_map(|n| n.to_string()),
                    proptest::num::f64::NORMAL.prop_map(|f| format!("{f:e}")),
                    "\\PC{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
                    proptest::strategy::Just("[1,{\"x\":null,\"x\":true}]".to_owned()),
                ]),
                0..8,
            )
        ) {
            let body = format!(
                "{{{}}}",
                fields.iter().map(|(k, v)| format!("{k:?}:{v}")).collect::<Vec<_>>().join(",")
            );
            let (fast, slow) = both(body.as_bytes());
            proptest::prop_assert_eq!(fast, slow, "{}", body);
        }
    }

    #[test]
    fn t_and_sign_do_not_count_and_everything_else_does() {
        let a = DedupKey::of_body(br#"{"callback_event":"TaskStart","t":1,"sign":"x"}"#).unwrap();
        let b =
            DedupKey::of_body(br#"{ "sign":"y", "callback_event" : "TaskStart","t":"2"}"#).unwrap();
        let c = DedupKey::of_body(br#"{"callback_event":"TaskStart","task_id":"1"}"#).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    /// Keys are stored: a new version must give the same key for the same
    /// body, or retries of events stored before an upgrade would be taken
    /// for new events.
    #[test]
    fn the_key_of_a_body_does_not_change_between_versions() {
        let body = include_bytes!("../../../fixtures/docs/task_exit.json");
        assert_eq!(
            DedupKey::of_body(body).unwrap().to_string(),
            "c7d2602ceab8d0259a9b5e5b3bf440e36775e8a94dd071a3935982294ce2a645"
        );
        let body = br#"{"callback_event":"X","n":-12,"u":18446744073709551615,"f":2.5,"s":"a\"b\u0001","t":1}"#;
        assert_eq!(
            DedupKey::of_body(body).unwrap().to_string(),
            "68426417133e91c791d61388bc90b723bc15ddaabc8d3d3ca8fac219422fa732"
        );
    }

    #[test]
    fn the_key_reads_back_from_its_text() {
        let key = DedupKey::of_body(br#"{"a":1}"#).unwrap();
        assert_eq!(key.to_string().parse::<DedupKey>().unwrap(), key);
        assert_eq!(key.to_string().len(), 64);
    }
}
