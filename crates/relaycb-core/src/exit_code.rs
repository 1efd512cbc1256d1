//! Plain-words explanations of `TaskExit` codes.
//!
//! Relay workers are built on FFmpeg, so an exit code is `0` for a normal
//! stop, `-errno` for a system error, or an FFmpeg tag code
//! (`-MKTAG(a, b, c, d)`). Every code gets an explanation: the known ones a
//! sentence an operator can act on, the others at least the errno name or
//! the four tag characters.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What an exit code means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The code as sent.
    pub code: i64,
    /// A short name: `EPIPE`, `AVERROR_HTTP_NOT_FOUND`, `OK`.
    pub name: String,
    /// What happened, in words a streaming operator understands.
    pub summary: String,
    /// Which family the code belongs to.
    pub kind: ExitKind,
}

/// The family of an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitKind {
    /// `0`: the task stopped normally.
    Normal,
    /// `-errno`: a system error.
    Errno,
    /// An FFmpeg tag code.
    Ffmpeg,
    /// Neither: only the number is known.
    Unknown,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.name, self.summary)
    }
}

/// FFmpeg's `FFERRTAG`: the negated little-endian tag of four bytes.
const fn tag(a: u8, b: u8, c: u8, d: u8) -> i64 {
    -((a as i64) | ((b as i64) << 8) | ((c as i64) << 16) | ((d as i64) << 24))
}

/// FFmpeg error codes with their names and explanations.
const FFMPEG: &[(i64, &str, &str)] = &[
    (
        tag(b'E', b'O', b'F', b' '),
        "AVERROR_EOF",
        "the source ended: the file or stream has no more data",
    ),
    (
        tag(b'I', b'N', b'D', b'A'),
        "AVERROR_INVALIDDATA",
        "the source sent data that could not be read as audio or video: a damaged file or an unsupported format",
    ),
    (
        tag(0xF8, b'4', b'0', b'0'),
        "AVERROR_HTTP_BAD_REQUEST",
        "the source answered HTTP 400: it refused the request as malformed",
    ),
    (
        tag(0xF8, b'4', b'0', b'1'),
        "AVERROR_HTTP_UNAUTHORIZED",
        "the source answered HTTP 401: it wants credentials, or the URL's signature is wrong",
    ),
    (
        tag(0xF8, b'4', b'0', b'3'),
        "AVERROR_HTTP_FORBIDDEN",
        "the source answered HTTP 403: access is denied, often an expired signed URL or a referer or IP rule",
    ),
    (
        tag(0xF8, b'4', b'0', b'4'),
        "AVERROR_HTTP_NOT_FOUND",
        "the source answered HTTP 404: the file or stream is gone",
    ),
    (
        tag(0xF8, b'4', b'2', b'9'),
        "AVERROR_HTTP_TOO_MANY_REQUESTS",
        "the source answered HTTP 429: it is rate-limiting the relay",
    ),
    (
        tag(0xF8, b'4', b'X', b'X'),
        "AVERROR_HTTP_OTHER_4XX",
        "the source answered with an HTTP 4xx error: the request was refused",
    ),
    (
        tag(0xF8, b'5', b'X', b'X'),
        "AVERROR_HTTP_SERVER_ERROR",
        "the source answered with an HTTP 5xx error: the origin server is failing",
    ),
    (
        tag(0xF8, b'P', b'R', b'O'),
        "AVERROR_PROTOCOL_NOT_FOUND",
        "the URL's scheme is not supported: check the protocol of the source or destination",
    ),
    (
        tag(0xF8, b'D', b'E', b'M'),
        "AVERROR_DEMUXER_NOT_FOUND",
        "the source's container format is not supported",
    ),
    (
        tag(0xF8, b'M', b'U', b'X'),
        "AVERROR_MUXER_NOT_FOUND",
        "the destination's container format is not supported",
    ),
    (
        tag(0xF8, b'D', b'E', b'C'),
        "AVERROR_DECODER_NOT_FOUND",
        "the source uses a codec the relay cannot decode",
    ),
    (
        tag(0xF8, b'E', b'N', b'C'),
        "AVERROR_ENCODER_NOT_FOUND",
        "the relay has no encoder for the requested output",
    ),
    (
        tag(0xF8, b'S', b'T', b'R'),
        "AVERROR_STREAM_NOT_FOUND",
        "the source has no audio or video stream that could be used",
    ),
    (
        tag(b'E', b'X', b'I', b'T'),
        "AVERROR_EXIT",
        "the relay was told to stop",
    ),
    (
        tag(b'E', b'X', b'T', b' '),
        "AVERROR_EXTERNAL",
        "a library the relay depends on failed",
    ),
    (
        tag(b'B', b'U', b'G', b'!'),
        "AVERROR_BUG",
        "the relay hit an internal bug",
    ),
    (
        tag(b'U', b'N', b'K', b'N'),
        "AVERROR_UNKNOWN",
        "the relay failed for a reason it could not name",
    ),
];

/// System errors with their names and explanations, by errno.
const ERRNO: &[(i64, &str, &str)] = &[
    (1, "EPERM", "an operation was not permitted"),
    (2, "ENOENT", "a file or path does not exist"),
    (4, "EINTR", "an operation was interrupted"),
    (
        5,
        "EIO",
        "an input or output error: the connection or the file broke while being read or written",
    ),
    (11, "EAGAIN", "a resource was temporarily unavailable"),
    (12, "ENOMEM", "the relay ran out of memory"),
    (13, "EACCES", "access was denied"),
    (
        22,
        "EINVAL",
        "an invalid argument: in a relay usually the destination refusing a packet (timestamps going back, a codec or parameters it does not take), or a bad task setting",
    ),
    (24, "EMFILE", "the relay ran out of file descriptors"),
    (28, "ENOSPC", "no space left on a device"),
    (
        32,
        "EPIPE",
        "the destination closed the connection while the relay was writing to it (broken pipe)",
    ),
    (
        71,
        "EPROTO",
        "a protocol error: the other side spoke an unexpected protocol (a TLS or RTMP handshake failed)",
    ),
    (
        99,
        "EADDRNOTAVAIL",
        "no local address was available to connect from",
    ),
    (100, "ENETDOWN", "the network is down"),
    (
        101,
        "ENETUNREACH",
        "the network of the source or destination cannot be reached",
    ),
    (103, "ECONNABORTED", "the connection was aborted"),
    (
        104,
        "ECONNRESET",
        "the other side reset the connection: the source or destination dropped the relay",
    ),
    (107, "ENOTCONN", "the connection was not open"),
    (
        110,
        "ETIMEDOUT",
        "a connection or read timed out: the source or destination stopped answering",
    ),
    (
        111,
        "ECONNREFUSED",
        "the connection was refused: nothing listens at the source or destination address",
    ),
    (
        112,
        "EHOSTDOWN",
        "the host of the source or destination is down",
    ),
    (
        113,
        "EHOSTUNREACH",
        "the host of the source or destination cannot be reached",
    ),
];

/// Explains any exit code.
///
/// Never fails: a code that is neither known nor decodable is explained as
/// unknown, with the number kept.
pub fn explain(code: i64) -> Explanation {
    let made = |name: &str, summary: String, kind| Explanation {
        code,
        name: name.to_owned(),
        summary,
        kind,
    };
    if code == 0 {
        return made(
            "OK",
            "the task stopped normally".to_owned(),
            ExitKind::Normal,
        );
    }
    if let Some((_, name, summary)) = FFMPEG.iter().find(|(c, _, _)| *c == code) {
        return made(name, (*summary).to_owned(), ExitKind::Ffmpeg);
    }
    if (-4095..=-1).contains(&code) {
        let errno = -code;
        return match ERRNO.iter().find(|(e, _, _)| *e == errno) {
            Some((_, name, summary)) => made(name, (*summary).to_owned(), ExitKind::Errno),
            None => made(
                &format!("errno {errno}"),
                format!("a system error (errno {errno})"),
                ExitKind::Errno,
            ),
        };
    }
    if code < 0 && code > -(1i64 << 32) {
        let bytes = (-code as u32).to_le_bytes();
        let printable = bytes[1..]
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ')
            && (bytes[0] == 0xF8 || bytes[0].is_ascii_graphic());
        if printable {
            let text: String = bytes
                .iter()
                .map(|&b| if b == 0xF8 { '\u{F8}' } else { b as char })
                .collect();
            return made(
                &format!("FFERRTAG({})", text.trim_start_matches('\u{F8}').trim_end()),
                format!("an FFmpeg error with the tag {text:?}"),
                ExitKind::Ffmpeg,
            );
        }
    }
    made(
        "UNKNOWN",
        format!("an exit code relaycb does not know ({code}); keep Tencent's message"),
        ExitKind::Unknown,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures listed in DOMAIN.md, checked against the tag arithmetic.
    #[test]
    fn documented_codes_have_their_names() {
        let cases = [
            (-541478725, "AVERROR_EOF"),
            (-1094995529, "AVERROR_INVALIDDATA"),
            (-808465656, "AVERROR_HTTP_BAD_REQUEST"),
            (-825242872, "AVERROR_HTTP_UNAUTHORIZED"),
            (-858797304, "AVERROR_HTTP_FORBIDDEN"),
            (-875574520, "AVERROR_HTTP_NOT_FOUND"),
            (-959591672, "AVERROR_HTTP_TOO_MANY_REQUESTS"),
            (-1482175736, "AVERROR_HTTP_OTHER_4XX"),
            (-1482175992, "AVERROR_HTTP_SERVER_ERROR"),
            (-1330794744, "AVERROR_PROTOCOL_NOT_FOUND"),
            (-22, "EINVAL"),
            (-5, "EIO"),
            (-32, "EPIPE"),
            (-104, "ECONNRESET"),
            (-110, "ETIMEDOUT"),
            (-111, "ECONNREFUSED"),
        ];
        for (code, name) in cases {
            assert_eq!(explain(code).name, name, "code {code}");
        }
    }

    #[test]
    fn zero_is_a_normal_stop() {
        let e = explain(0);
        assert_eq!(e.kind, ExitKind::Normal);
        assert_eq!(e.summary, "the task stopped normally");
    }

    #[test]
    fn http_404_says_the_source_is_gone() {
        assert_eq!(
            explain(-875574520).summary,
            "the source answered HTTP 404: the file or stream is gone"
        );
    }

    #[test]
    fn unknown_errno_keeps_its_number() {
        let e = explain(-4000);
        assert_eq!((e.name.as_str(), e.kind), ("errno 4000", ExitKind::Errno));
    }

    #[test]
    fn unknown_tag_shows_its_characters() {
        let e = explain(tag(b'A', b'B', b'C', b'D'));
        assert_eq!(e.name, "FFERRTAG(ABCD)");
        assert_eq!(e.kind, ExitKind::Ffmpeg);
    }

    #[test]
    fn anything_else_is_unknown_but_explained() {
        for code in [7, -5_000_000_000, i64::MIN, i64::MAX] {
            let e = explain(code);
            assert_eq!(e.kind, ExitKind::Unknown, "code {code}");
            assert!(e.summary.contains(&code.to_string()));
        }
    }
}
