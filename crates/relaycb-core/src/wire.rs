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
    /// A string holding JSON (`msg`, `source_urls`), read while the parser
    /// still had it at hand.
    Encoded(Encoded<'a>),
}

/// What a JSON-encoded string field held.
#[derive(Debug)]
pub(crate) enum Encoded<'a> {
    /// `msg` text that is a JSON object.
    Msg(Box<WireObject<'a>>),
    /// `source_urls` text that is a JSON array of strings.
    Urls(Vec<String>),
    /// Any other text, to be examined by the decoder.
    Text(String),
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
            Loose::Encoded(_) => "a string".to_owned(),
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
            Loose::Encoded(Encoded::Msg(o)) => {
                Value::String(Value::Object(o.into_map()).to_string())
            }
            Loose::Encoded(Encoded::Urls(urls)) => {
                Value::String(serde_json::to_string(&urls).expect("strings serialise"))
            }
            Loose::Encoded(Encoded::Text(text)) => Value::String(text),
        }
    }

    /// Copies every borrowed string, so the value can outlive its input.
    fn into_owned(self) -> Loose<'static> {
        match self {
            Loose::Str(s) => Loose::Str(Cow::Owned(s.into_owned())),
            Loose::Null => Loose::Null,
            Loose::Bool(b) => Loose::Bool(b),
            Loose::Int(n) => Loose::Int(n),
            Loose::UInt(n) => Loose::UInt(n),
            Loose::Float(n) => Loose::Float(n),
            Loose::Array(a) => Loose::Array(a),
            Loose::Object(o) => Loose::Object(o),
            Loose::Encoded(Encoded::Msg(object)) => {
                Loose::Encoded(Encoded::Msg(Box::new(object.into_owned())))
            }
            Loose::Encoded(Encoded::Urls(urls)) => Loose::Encoded(Encoded::Urls(urls)),
            Loose::Encoded(Encoded::Text(text)) => Loose::Encoded(Encoded::Text(text)),
        }
    }
}

/// Reads a string field that holds JSON, parsing it in place: the parser
/// hands over the unescaped text only for the duration of the call, so
/// parsing there saves copying it.
struct EncodedSeed {
    msg: bool,
}

impl<'de> DeserializeSeed<'de> for EncodedSeed {
    type Value = Loose<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EncodedSeed {
    type Value = Loose<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        let trimmed = v.trim_start();
        let encoded = if self.msg && trimmed.starts_with('{') {
            let mut json = serde_json::Deserializer::from_str(v);
            match DocumentSeed(MSG_KEYS)
                .deserialize(&mut json)
                .and_then(|doc| json.end().map(|()| doc))
            {
                Ok(Document::Object(object)) => Encoded::Msg(Box::new(object.into_owned())),
                _ => Encoded::Text(v.to_owned()),
            }
        } else if !self.msg && trimmed.starts_with('[') {
            match serde_json::from_str::<Vec<String>>(v) {
                Ok(urls) => Encoded::Urls(urls),
                Err(_) => Encoded::Text(v.to_owned()),
            }
        } else {
            Encoded::Text(v.to_owned())
        };
        Ok(Loose::Encoded(encoded))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        LooseVisitor.visit_bool(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        LooseVisitor.visit_i64(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        LooseVisitor.visit_u64(v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        LooseVisitor.visit_f64(v)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        LooseVisitor.visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        LooseVisitor.visit_map(map)
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

/// A fixed list of known keys: their names in slot order, and a lookup from
/// name to slot that compiles to a `match` rather than a scan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeySet {
    names: &'static [&'static str],
    lookup: fn(&str) -> Option<usize>,
    /// The slot whose string value is a JSON-encoded `msg` object.
    nested: Option<usize>,
    /// The slot whose string value is a JSON-encoded list of URLs.
    listed: Option<usize>,
}

impl KeySet {
    /// The slot of a known key.
    pub(crate) fn slot(&self, name: &str) -> Option<usize> {
        (self.lookup)(name)
    }

    /// The slot whose string value is a JSON-encoded `msg` object.
    pub(crate) fn nested(&self) -> Option<usize> {
        self.nested
    }

    /// The slot whose string value is a JSON-encoded list of URLs.
    pub(crate) fn listed(&self) -> Option<usize> {
        self.listed
    }
}

macro_rules! key_set {
    ($set:ident, $module:ident, $nested:expr, $listed:expr, { $($slot:ident = $name:literal),* $(,)? }) => {
        /// Slot numbers of the known keys.
        #[allow(dead_code)]
        pub(crate) mod $module {
            key_set!(@consts 0usize; $($slot)*);
        }
        pub(crate) const $set: KeySet = KeySet {
            names: &[$($name),*],
            lookup: |name| match name {
                $($name => Some($module::$slot),)*
                _ => None,
            },
            nested: $nested,
            listed: $listed,
        };
    };
    (@consts $n:expr; $head:ident $($rest:ident)*) => {
        pub(crate) const $head: usize = $n;
        key_set!(@consts $n + 1usize; $($rest)*);
    };
    (@consts $n:expr;) => {};
}

key_set!(BODY_KEYS, body, Some(body::MSG), Some(body::SOURCE_URLS), {
    APPID = "appid",
    APP_ID_ALIAS = "appId",
    EVENT_TYPE = "event_type",
    CALLBACK_EVENT = "callback_event",
    TASK_ID = "task_id",
    STREAM_ID = "stream_id",
    TO_URL = "to_url",
    SOURCE_URLS = "source_urls",
    MSG = "msg",
    EVENT_TIME = "event_time",
    CALLBACK_URL = "callback_url",
    INTERFACE = "interface",
    PRODUCT_NAME = "product_name",
    T = "t",
    SIGN = "sign",
});

key_set!(MSG_KEYS, msg, None, None, {
    TASK_START_TIME = "task_start_time",
    URL = "url",
    INDEX = "index",
    DURATION = "duration",
    TASK_EXIT_TIME = "task_exit_time",
    CODE = "code",
    MESSAGE = "message",
    TYPE = "type",
});

/// The most known keys a [`WireObject`] holds; slots live inline, so that
/// reading a body allocates only for the values themselves.
const MAX_KEYS: usize = 16;

/// A JSON object read against a fixed list of known keys.
#[derive(Debug)]
pub(crate) struct WireObject<'a> {
    keys: KeySet,
    slots: [Option<Loose<'a>>; MAX_KEYS],
    /// Keys outside the known list, in the order they came.
    pub(crate) extra: Vec<(String, Value)>,
    /// Keys that appeared more than once.
    pub(crate) duplicates: Vec<String>,
}

impl<'a> WireObject<'a> {
    pub(crate) fn empty(keys: KeySet) -> Self {
        debug_assert!(keys.names.len() <= MAX_KEYS);
        WireObject {
            keys,
            slots: Default::default(),
            extra: Vec::new(),
            duplicates: Vec::new(),
        }
    }

    /// Builds the object from an already parsed JSON map (a plain `msg`).
    pub(crate) fn from_map(keys: KeySet, map: Map<String, Value>) -> Self {
        let mut object = WireObject::empty(keys);
        for (key, value) in map {
            match (keys.lookup)(&key) {
                Some(slot) => object.slots[slot] = Some(Loose::from_value(value)),
                None => object.extra.push((key, value)),
            }
        }
        object
    }

    /// Copies every borrowed string, so the object can outlive its input.
    fn into_owned(self: Box<Self>) -> WireObject<'static> {
        let WireObject {
            keys,
            slots,
            extra,
            duplicates,
        } = *self;
        WireObject {
            keys,
            slots: slots.map(|slot| slot.map(Loose::into_owned)),
            extra,
            duplicates,
        }
    }

    /// The object as a plain JSON map (key order and repeats are lost).
    pub(crate) fn into_map(mut self) -> Map<String, Value> {
        let mut map: Map<String, Value> = self
            .leftovers()
            .map(|(key, value)| (key.to_owned(), value.into_value()))
            .collect();
        map.extend(self.extra);
        map
    }

    /// The known keys.
    pub(crate) fn keys(&self) -> KeySet {
        self.keys
    }

    /// Sets a known key; the last value of a repeated key is used, and the
    /// repeat recorded.
    pub(crate) fn set(&mut self, slot: usize, value: Loose<'a>) {
        if self.slots[slot].replace(value).is_some() {
            self.duplicates.push(self.keys.names[slot].to_owned());
        }
    }

    /// Sets a key outside the known list, as [`WireObject::set`] does.
    pub(crate) fn set_extra(&mut self, name: String, value: Value) {
        if let Some(existing) = self.extra.iter_mut().find(|(k, _)| *k == name) {
            existing.1 = value;
            self.duplicates.push(name);
        } else {
            self.extra.push((name, value));
        }
    }

    /// Takes the value of a known key out of its slot (a constant of the
    /// key set's module, such as `body::TASK_ID`).
    pub(crate) fn take(&mut self, slot: usize) -> Option<Loose<'a>> {
        self.slots[slot].take()
    }

    /// Known keys that were not taken, with their values.
    pub(crate) fn leftovers(&mut self) -> impl Iterator<Item = (&'static str, Loose<'a>)> + '_ {
        let keys = self.keys.names;
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(move |(i, slot)| slot.take().map(|value| (keys[i], value)))
    }
}

/// What a JSON document turned out to be, read as a relay object.
#[derive(Debug)]
pub(crate) enum Document<'a> {
    /// Boxed: the slots are large, and one allocation costs less than the
    /// copies that moving them through the parser would.
    Object(Box<WireObject<'a>>),
    /// Any other JSON value; the string names its type.
    Other(&'static str),
}

/// Reads a document as a [`WireObject`] with the given known keys.
pub(crate) struct DocumentSeed(pub(crate) KeySet);

impl<'de> DeserializeSeed<'de> for DocumentSeed {
    type Value = Document<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(DocumentVisitor(self.0))
    }
}

struct DocumentVisitor(KeySet);

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
        let mut object = Box::new(WireObject::empty(self.0));
        while let Some(key) = map.next_key_seed(KeySeed(self.0))? {
            match key {
                Key::Known(slot) => {
                    let encoded = self.0.nested == Some(slot) || self.0.listed == Some(slot);
                    let value = if encoded {
                        map.next_value_seed(EncodedSeed {
                            msg: self.0.nested == Some(slot),
                        })?
                    } else {
                        map.next_value::<Loose<'de>>()?
                    };
                    object.set(slot, value);
                }
                Key::Other(name) => {
                    let value = map.next_value::<Value>()?;
                    object.set_extra(name, value);
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

struct KeySeed(KeySet);

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
        Ok(match (self.0.lookup)(v) {
            Some(slot) => Key::Known(slot),
            None => Key::Other(v.to_owned()),
        })
    }
}
