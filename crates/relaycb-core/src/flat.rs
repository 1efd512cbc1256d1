//! A parser for the shape nearly every body has: one JSON object whose
//! values are strings, integers, booleans or null (or arrays and objects of
//! those); the same for the object
//! encoded in `msg`, and an array of strings for `source_urls`. It reads
//! such text in one pass without building any intermediate tree, borrowing
//! every string without escapes. Repeated and unknown keys are recorded as
//! the serde path records them, by the same [`WireObject`] methods.
//!
//! `msg` and `source_urls` are read in place, inside their strings, when
//! the JSON they hold has no escapes of its own; otherwise they are
//! unescaped into a copy for the decoder to read.
//!
//! While reading a body it can also keep, for the dedup key, each member's
//! key and the raw text of its value ([`Member`]).
//!
//! It gives up (returns `None`) on anything else: deeper nesting, numbers
//! with a fraction or an exponent, `-0`, integers beyond 18 digits, `\u`
//! escapes, and every syntax error. The general parsers then decide, so
//! that whatever it does accept decodes exactly as they would decode it.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::wire::{Encoded, Loose, MSG_KEYS, WireObject};

/// Reads `text` as one flat object into `object`, which must be empty, or
/// gives up, leaving in `object` what it had read. With `members`, each
/// member is also pushed there as it is read.
pub(crate) fn object<'a>(
    object: &mut WireObject<'a>,
    text: &'a str,
    members: Option<&mut Vec<Member<'a>>>,
) -> Option<()> {
    let mut scan = Scanner::new(text);
    scan.skip_space();
    scan.members(object, members)?;
    scan.end().then_some(())
}

/// One member of an object as it was written, for the dedup key.
#[derive(Debug)]
pub(crate) struct Member<'a> {
    /// The key, unescaped.
    pub(crate) key: Cow<'a, str>,
    /// The value's text, from its first byte to its last.
    pub(crate) raw: &'a str,
    /// Whether `raw` is already the value's canonical form: what serde_json
    /// would write for the value once parsed.
    pub(crate) canonical: bool,
}

/// Whether the raw text of `value` is what serde_json writes for it.
///
/// A string without escapes holds no quote, backslash nor control
/// character (the scanner stops at a raw one), which are all serde_json
/// escapes: it writes the text byte for byte. Neither does it escape `/`,
/// so a string escaping one is not canonical; the other escapes the scanner
/// reads (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`) are serde_json's
/// own. JSON read in place inside a string (`msg`, `source_urls`) holds
/// strings without escapes, and between them only `\"` and the white space
/// `\n`, `\r`, `\t`. A plain integer is written as Rust prints it: no sign
/// for a positive one, no leading zero. Arrays and objects may hold white
/// space and unsorted keys, so are not.
fn is_canonical(value: &Loose<'_>, raw: &str) -> bool {
    match value {
        Loose::Null | Loose::Bool(_) | Loose::Int(_) | Loose::Encoded(_) => true,
        Loose::Str(Cow::Borrowed(_)) => true,
        Loose::Str(Cow::Owned(_)) => !escapes_slash(raw),
        Loose::UInt(_) | Loose::Float(_) | Loose::Array(_) | Loose::Object(_) => false,
    }
}

/// Whether a string's text has the escape `\/`.
fn escapes_slash(raw: &str) -> bool {
    let mut bytes = raw.bytes();
    while let Some(byte) = bytes.next() {
        if byte == b'\\' && bytes.next() == Some(b'/') {
            return true;
        }
    }
    false
}

/// Reads `text` as a JSON array of strings, or gives up.
pub(crate) fn strings(text: &str) -> Option<Vec<String>> {
    let mut scan = Scanner::new(text);
    scan.skip_space();
    let items = scan.items()?;
    scan.end().then_some(items)
}

#[derive(Clone, Copy)]
struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    /// Reading JSON inside a JSON string, where quotes come escaped (`\"`)
    /// and so may white space (`\n`). Only strings without escapes of their
    /// own are read there, so that each can borrow from the outer text.
    nested: bool,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner {
            text,
            bytes: text.as_bytes(),
            at: 0,
            nested: false,
        }
    }

    /// An object, from its `{`, into `object`, and each member into
    /// `record` if given.
    fn members(
        &mut self,
        object: &mut WireObject<'a>,
        mut record: Option<&mut Vec<Member<'a>>>,
    ) -> Option<()> {
        let keys = object.keys();
        self.expect(b'{')?;
        self.skip_space();
        if self.accept(b'}') {
            return Some(());
        }
        loop {
            self.expect_quote()?;
            let name = self.string()?;
            self.skip_space();
            self.expect(b':')?;
            self.skip_space();
            let start = self.at;
            let slot = keys.slot(&name);
            let value = match slot {
                Some(slot) if keys.nested() == Some(slot) => self.encoded(true)?,
                Some(slot) if keys.listed() == Some(slot) => self.encoded(false)?,
                _ => self.value()?,
            };
            if let Some(record) = record.as_deref_mut() {
                let raw = self.text.get(start..self.at)?;
                record.push(Member {
                    key: name.clone(),
                    raw,
                    canonical: is_canonical(&value, raw),
                });
            }
            match slot {
                Some(slot) => object.set(slot, value),
                // Kept as it came, as serde_json would read it.
                None => object.set_extra(name.into_owned(), value.into_value()),
            }
            self.skip_space();
            match self.next()? {
                b',' => self.skip_space(),
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// An array of strings, from its `[`.
    fn items(&mut self) -> Option<Vec<String>> {
        self.list(|scan| {
            scan.expect_quote()?;
            Some(scan.string()?.into_owned())
        })
    }

    /// An array, from its `[`, each item read by `item`.
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let mut items = Vec::new();
        self.expect(b'[')?;
        self.skip_space();
        if self.accept(b']') {
            return Some(items);
        }
        loop {
            items.push(item(self)?);
            self.skip_space();
            match self.next()? {
                b',' => self.skip_space(),
                b']' => return Some(items),
                _ => return None,
            }
        }
    }

    /// The value of `msg` (`object`) or `source_urls`: a string, read in
    /// place as the JSON it holds when that is a flat object or an array of
    /// strings, which saves unescaping it into a copy and reading that.
    fn encoded(&mut self, object: bool) -> Option<Loose<'a>> {
        if self.nested || self.bytes.get(self.at) != Some(&b'"') {
            return self.value();
        }
        let mut inner = Scanner {
            at: self.at + 1,
            nested: true,
            ..*self
        };
        inner.skip_space();
        let encoded = if object {
            let mut fields = Box::new(WireObject::empty(MSG_KEYS));
            inner
                .members(&mut fields, None)
                .map(|()| Encoded::Msg(fields))
        } else {
            inner.items().map(Encoded::Urls)
        };
        inner.skip_space();
        match encoded {
            // The string ends right after the JSON it holds.
            Some(encoded) if inner.accept(b'"') => {
                self.at = inner.at;
                Some(Loose::Encoded(encoded))
            }
            _ => self.value(),
        }
    }

    fn skip_space(&mut self) {
        if self.nested {
            loop {
                match self.bytes.get(self.at..) {
                    Some([b' ', ..]) => self.at += 1,
                    Some([b'\\', b'n' | b't' | b'r', ..]) => self.at += 2,
                    _ => return,
                }
            }
        }
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// Steps over the quote that opens a string, escaped when nested.
    fn expect_quote(&mut self) -> Option<()> {
        if self.nested {
            let found = self.bytes.get(self.at..self.at + 2) == Some(b"\\\"");
            self.at += if found { 2 } else { 0 };
            found.then_some(())
        } else {
            self.expect(b'"')
        }
    }

    /// Whether only white space is left.
    fn end(&mut self) -> bool {
        self.skip_space();
        self.at == self.bytes.len()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    /// Steps over `byte` if it comes next.
    fn accept(&mut self, byte: u8) -> bool {
        let found = self.bytes.get(self.at) == Some(&byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.accept(byte).then_some(())
    }

    fn literal(&mut self, word: &[u8], value: Loose<'a>) -> Option<Loose<'a>> {
        let rest = self.bytes.get(self.at..)?;
        rest.starts_with(word).then(|| {
            self.at += word.len();
            value
        })
    }

    /// A plain value, or an array or object of plain values.
    fn value(&mut self) -> Option<Loose<'a>> {
        match self.bytes.get(self.at)? {
            b'[' => self.array().map(Loose::Array),
            b'{' => self.map().map(Loose::Object),
            _ => self.plain(),
        }
    }

    /// An array of plain values, from its `[`, as serde_json reads one.
    fn array(&mut self) -> Option<Vec<Value>> {
        self.list(|scan| Some(scan.plain()?.into_value()))
    }

    /// An object of plain values, from its `{`, as serde_json reads one
    /// (the last value of a repeated key is kept).
    fn map(&mut self) -> Option<Map<String, Value>> {
        let mut map = Map::new();
        self.expect(b'{')?;
        self.skip_space();
        if self.accept(b'}') {
            return Some(map);
        }
        loop {
            self.expect_quote()?;
            let key = self.string()?.into_owned();
            self.skip_space();
            self.expect(b':')?;
            self.skip_space();
            map.insert(key, self.plain()?.into_value());
            self.skip_space();
            match self.next()? {
                b',' => self.skip_space(),
                b'}' => return Some(map),
                _ => return None,
            }
        }
    }

    /// A string, an integer, a boolean or null.
    fn plain(&mut self) -> Option<Loose<'a>> {
        if self.expect_quote().is_some() {
            return self.string().map(Loose::Str);
        }
        match *self.bytes.get(self.at)? {
            b'-' | b'0'..=b'9' => self.integer(),
            b'n' => self.literal(b"null", Loose::Null),
            b't' => self.literal(b"true", Loose::Bool(true)),
            b'f' => self.literal(b"false", Loose::Bool(false)),
            _ => None,
        }
    }

    /// An integer as serde_json reads one: `-0` is a float there, and
    /// longer numbers may overflow, so both are left to it.
    fn integer(&mut self) -> Option<Loose<'a>> {
        let negative = self.accept(b'-');
        let start = self.at;
        while let Some(b'0'..=b'9') = self.bytes.get(self.at) {
            self.at += 1;
        }
        let digits = &self.bytes[start..self.at];
        let leading_zero = digits.first() == Some(&b'0') && digits.len() > 1;
        if digits.is_empty() || digits.len() > 18 || leading_zero {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.bytes.get(self.at) {
            return None;
        }
        let n = digits
            .iter()
            .fold(0i64, |n, digit| n * 10 + i64::from(digit - b'0'));
        match (negative, n) {
            (false, n) => Some(Loose::Int(n)),
            (true, 0) => None,
            (true, n) => Some(Loose::Int(-n)),
        }
    }

    /// The rest of a string whose opening quote has been read: borrowed
    /// when it has no escape, else unescaped into a copy.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let start = self.at;
        self.at = special(self.bytes, start);
        // Both ends are ASCII, so on character boundaries.
        let text = self.text.get(start..self.at)?;
        match (self.nested, *self.bytes.get(self.at)?) {
            (false, b'"') => {
                self.at += 1;
                Some(Cow::Borrowed(text))
            }
            (false, b'\\') => self.escaped(start).map(Cow::Owned),
            (true, b'\\') => {
                self.expect_quote()?;
                Some(Cow::Borrowed(text))
            }
            _ => None,
        }
    }

    /// The rest of a string from `start`, with an escape where the scanner is.
    fn escaped(&mut self, start: usize) -> Option<String> {
        // The text unescaped is no longer than it is escaped.
        let mut text = String::with_capacity(self.closing_quote(self.at) - start);
        let mut run = start;
        loop {
            text.push_str(self.text.get(run..self.at)?);
            match *self.bytes.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(text);
                }
                b'\\' => {
                    self.at += 1;
                    text.push(match self.next()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        _ => return None,
                    });
                    run = self.at;
                    self.at = special(self.bytes, run);
                }
                _ => return None,
            }
        }
    }
}

impl Scanner<'_> {
    /// Where the quote that closes a string is, from inside it (the length
    /// when there is none).
    fn closing_quote(&self, mut at: usize) -> usize {
        loop {
            at = special(self.bytes, at);
            match self.bytes.get(at) {
                Some(b'\\') => at += 2,
                Some(b'"') | None => return at.min(self.bytes.len()),
                Some(_) => at += 1,
            }
        }
    }
}

/// Where the next quote, backslash or control character is at or after
/// `at` (the length when there is none), eight bytes at a time.
fn special(bytes: &[u8], at: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    const SPACES: u64 = ONES * b' ' as u64;
    let mut offset = at.min(bytes.len());
    let mut chunks = bytes[offset..].chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of eight"));
        let quote = word ^ QUOTES;
        let backslash = word ^ BACKSLASHES;
        // A byte is flagged when it is zero (or below a space); a borrow can
        // flag bytes above the first, never below, so the lowest is exact.
        let found = (quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash
            | word.wrapping_sub(SPACES) & !word)
            & HIGH;
        if found != 0 {
            return offset + (found.trailing_zeros() / 8) as usize;
        }
        offset += 8;
    }
    for &byte in chunks.remainder() {
        if byte == b'"' || byte == b'\\' || byte < b' ' {
            break;
        }
        offset += 1;
    }
    offset
}
