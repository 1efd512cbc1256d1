//! Serde structures that mirror Tencent's JSON as it arrives, before any
//! meaning is given to it.
//!
//! Every field is read as a [`Loose`] value, whatever its type, so that the
//! decoder can accept each documented shape and say what it had to accept.
//! Known keys are matched without allocating; unknown keys are kept.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A JSON value of any type, borrowing strings from the input when it can.
#[derive(Debug)]
pub(crate) enum Loose<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Value>),
    Object(Map<String, Value>),
}

impl Loose<'_> {
    /// Names the JSON type with an article, for "found ..." messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Loose::Null => "null".to_owned(),
            Loose::Bool(b) => format!("the boolean {b}"),
            Loose::Int(n) => format!("the number {n}"),
            Loose::UInt(n) => format!("the number {n}"),
            Loose::Float(n) => format!("the number {n}"),
            Loose::Str(s) => format!("the string {}", crate::error::quote(s)),
            Loose::Array(_) => "an array".to_owned(),
            Loose::Object(_) => "an object".to_owned(),
        }
    }

    pub(crate) fn from_value(value: Value) -> Loose<'static> {
        match value {
            Value::Null => Loose::Null,
            Value::Bool(b) => Loose::Bool(b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Loose::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Loose::UInt(u)
                } else {
                    Loose::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => Loose::Str(Cow::Owned(s)),
            Value::Array(a) => Loose::Array(a),
            Value::Object(o) => Loose::Object(o),
        }
    }

    pub(crate) fn into_value(self) -> Value {
        match self {
            Loose::Null => Value::Null,
            Loose::Bool(b) => Value::Bool(b),
            Loose::Int(n) => Value::from(n),
            Loose::UInt(n) => Value::from(n),
            Loose::Float(n) => serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
            Loose::Str(s) => Value::String(s.into_owned()),
            Loose::Array(a) => Value::Array(a),
            Loose::Object(o) => Value::Object(o),
        }
    }
}

impl<'de> de::Deserialize<'de> for Loose<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Loose::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Loose::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Loose::UInt(v), Loose::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Loose::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Loose::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = Map::new();
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            object.insert(key, value);
        }
        Ok(Loose::Object(object))
    }
}

/// The top-level keys of a relay callback, in slot order.
pub(crate) const BODY_KEYS: &[&str] = &[
    "appid",
    "appId",
    "event_type",
    "callback_event",
    "task_id",
    "stream_id",
    "to_url",
    "source_urls",
    "msg",
    "event_time",
    "callback_url",
    "interface",
    "product_name",
    "t",
    "sign",
];

/// The documented keys of `msg`, in slot order.
pub(crate) const MSG_KEYS: &[&str] = &[
    "task_start_time",
    "url",
    "index",
    "duration",
    "task_exit_time",
    "code",
    "message",
    "type",
];

/// A JSON object read against a fixed list of known keys.
#[derive(Debug)]
pub(crate) struct WireObject<'a> {
    keys: &'static [&'static str],
    slots: Vec<Option<Loose<'a>>>,
    /// Keys outside the known list, in the order they came.
    pub(crate) extra: Vec<(String, Value)>,
    /// Keys that appeared more than once.
    pub(crate) duplicates: Vec<String>,
}

impl<'a> WireObject<'a> {
    fn empty(keys: &'static [&'static str]) -> Self {
        WireObject {
            keys,
            slots: (0..keys.len()).map(|_| None).collect(),
            extra: Vec::new(),
            duplicates: Vec::new(),
        }
    }

    /// Builds the object from an already parsed JSON map (a plain `msg`).
    pub(crate) fn from_map(keys: &'static [&'static str], map: Map<String, Value>) -> Self {
        let mut object = WireObject::empty(keys);
        for (key, value) in map {
            match keys.iter().position(|k| *k == key) {
                Some(slot) => object.slots[slot] = Some(Loose::from_value(value)),
                None => object.extra.push((key, value)),
            }
        }
        object
    }

    /// Rebuilds the object with every known value passed through `f`.
    pub(crate) fn map_values<'b>(self, mut f: impl FnMut(Loose<'a>) -> Loose<'b>) -> WireObject<'b> {
        WireObject {
            keys: self.keys,
            slots: self.slots.into_iter().map(|slot| slot.map(&mut f)).collect(),
            extra: self.extra,
            duplicates: self.duplicates,
        }
    }

    /// Takes the value of a known key out of its slot.
    ///
    /// Panics if `key` is not in the object's key list: that is a bug in the
    /// decoder, not in the input.
    pub(crate) fn take(&mut self, key: &str) -> Option<Loose<'a>> {
        let slot = self
            .keys
            .iter()
            .position(|k| *k == key)
            .expect("key is in the known list");
        self.slots[slot].take()
    }

    /// Known keys that were not taken, with their values.
    pub(crate) fn leftovers(&mut self) -> impl Iterator<Item = (&'static str, Loose<'a>)> + '_ {
        let keys = self.keys;
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(move |(i, slot)| slot.take().map(|value| (keys[i], value)))
    }
}

/// What a JSON document turned out to be, read as a relay object.
#[derive(Debug)]
pub(crate) enum Document<'a> {
    Object(WireObject<'a>),
    /// Any other JSON value; the string names its type.
    Other(&'static str),
}

/// Reads a document as a [`WireObject`] with the given known keys.
pub(crate) struct DocumentSeed(pub(crate) &'static [&'static str]);

impl<'de> DeserializeSeed<'de> for DocumentSeed {
    type Value = Document<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(DocumentVisitor(self.0))
    }
}

struct DocumentVisitor(&'static [&'static str]);

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = Document<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Document::Other("null"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Document::Other("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Document::Other("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Document::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Document::Other("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Document::Other("a string"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Document::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = WireObject::empty(self.0);
        while let Some(key) = map.next_key_seed(KeySeed(self.0))? {
            match key {
                Key::Known(slot) => {
                    let value = map.next_value::<Loose<'de>>()?;
                    if object.slots[slot].replace(value).is_some() {
                        object.duplicates.push(self.0[slot].to_owned());
                    }
                }
                Key::Other(name) => {
                    let value = map.next_value::<Value>()?;
                    if let Some(existing) = object.extra.iter_mut().find(|(k, _)| *k == name) {
                        existing.1 = value;
                        object.duplicates.push(name);
                    } else {
                        object.extra.push((name, value));
                    }
                }
            }
        }
        Ok(Document::Object(object))
    }
}

enum Key {
    Known(usize),
    Other(String),
}

struct KeySeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(match self.0.iter().position(|k| *k == v) {
            Some(slot) => Key::Known(slot),
            None => Key::Other(v.to_owned()),
        })
    }
}
