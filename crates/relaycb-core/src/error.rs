//! The one error type of relaycb-core: what went wrong, where in the body, and
//! which broad category it falls in.
//!
//! Messages are lower case without a final period, and always say what was
//! expected and what was found, so that they can be shown to an operator as
//! they are.

use std::fmt;

/// The broad kind of an [`Error`], stable enough to branch on (for example
/// to pick an HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Category {
    /// The bytes are not JSON at all (or not UTF-8).
    Syntax,
    /// The bytes are JSON, but not a relay callback: not an object, or an
    /// `event_type` other than 314.
    NotRelay,
    /// A field that a callback cannot do without is absent.
    Missing,
    /// A field holds a value of a type that no version of the documentation
    /// allows.
    WrongType,
    /// Strict decoding refused a deviation that lenient decoding accepts.
    Deviation,
    /// The `t`/`sign` pair failed verification.
    Signature,
}

impl Category {
    /// The snake_case name of the category, as used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Syntax => "syntax",
            Category::NotRelay => "not_relay",
            Category::Missing => "missing",
            Category::WrongType => "wrong_type",
            Category::Deviation => "deviation",
            Category::Signature => "signature",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a body could not be decoded, or a signature not verified.
///
/// The message names the field by its JSON path (`msg.index`) and says what
/// was expected and what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct Error {
    category: Category,
    path: Option<String>,
    message: String,
}

impl Error {
    pub(crate) fn new(category: Category, path: Option<&str>, message: impl Into<String>) -> Self {
        Error {
            category,
            path: path.map(str::to_owned),
            message: message.into(),
        }
    }

    /// The broad kind of the error.
    pub fn category(&self) -> Category {
        self.category
    }

    /// The JSON path of the field at fault (`task_id`, `msg.code`), or
    /// `None` when the error is about the body as a whole.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// The explanation without the path prefix.
    pub fn reason(&self) -> &str {
        &self.message
    }

    fn render(&self) -> String {
        match &self.path {
            Some(path) => format!("{path}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

/// Shortens a value for quoting inside an error message.
pub(crate) fn quote(found: &str) -> String {
    const LIMIT: usize = 60;
    if found.chars().count() <= LIMIT {
        format!("{found:?}")
    } else {
        let head: String = found.chars().take(LIMIT).collect();
        format!("{head:?}…")
    }
}
