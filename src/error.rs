//! The proxy's error: what failed, on which side, whether trying again is
//! safe, and one rendering as the Redis error reply a client gets
//! ([`Error::reply`]).
//!
//! Errors a client sees are worded as Redis words them (`ERR syntax error`,
//! a node's own error reply passed on as it is); respite's own conditions
//! have their texts here, once ([`Error::unavailable`], [`SLOT_NOT_SERVED`],
//! ...). Errors of the proxy's own control traffic (topology, sentinel) are
//! logged with the same type.

use bytes::{Bytes, BytesMut};
use std::borrow::Cow;
use std::fmt;

/// Redis Cluster's answer when no node serves a slot.
pub const SLOT_NOT_SERVED: &str = "CLUSTERDOWN Hash slot not served";
/// A keyless cluster request before any slot map is known.
pub const NO_SLOT_MAP: &str = "CLUSTERDOWN The cluster is down (no slot map yet)";
/// Redis Cluster's answer for keys of several slots.
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";
/// Redis's answer before `AUTH`.
pub const NOAUTH: &str = "NOAUTH Authentication required.";
/// Redis's answer to a malformed argument list.
pub const SYNTAX: &str = "ERR syntax error";
/// Redis's answer to an integer argument that is not one.
pub const NOT_INT: &str = "ERR value is not an integer or out of range";

/// Redis's arity error for `name` (lowercase, as Redis prints it).
pub fn arity(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}

/// Which side of the proxy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client's request (arity, syntax): sending it again fails again.
    Client,
    /// A Redis node: unreachable, its connection failed, or it answered an
    /// error or something unreadable.
    Upstream,
    /// The cluster as a whole: no node serves a slot, or the slot moved
    /// more often than the proxy follows.
    Cluster,
    /// The proxy itself.
    Internal,
}

/// What failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum What {
    /// An error line in Redis's words (no `-`, no CRLF), answered as it is.
    Line(Cow<'static, str>),
    /// A node could not be reached or its connection failed.
    Unavailable { addr: String, why: String },
    /// A node answered respite's own handshake (`AUTH`, `HELLO`, `SELECT`)
    /// with the error `reply` (no `-`, no CRLF).
    HandshakeRefused { addr: String, reply: String },
    /// A control-plane step failed (connecting, reading a reply): logged.
    Io(String),
}

/// An error of the proxy (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    side: Side,
    retry: bool,
    what: What,
}

impl Error {
    /// The client's request is wrong; `line` is Redis's wording
    /// (`ERR syntax error`).
    pub fn client(line: impl Into<Cow<'static, str>>) -> Error {
        Error {
            side: Side::Client,
            retry: false,
            what: What::Line(line.into()),
        }
    }

    /// A node answered the error `line` (its reply without `-` and CRLF),
    /// passed on as it is.
    pub fn reply(line: impl Into<Cow<'static, str>>) -> Error {
        Error {
            side: Side::Upstream,
            retry: false,
            what: What::Line(line.into()),
        }
    }

    /// A node answered the error reply `reply` (as read, `-` and CRLF included).
    pub fn from_reply(reply: &[u8]) -> Error {
        let body = reply.strip_prefix(b"-").unwrap_or(reply);
        Error::reply(String::from_utf8_lossy(body).trim_end().to_string())
    }

    /// A node's reply could not be read or had an unexpected shape; `line`
    /// says so in Redis's form (`ERR ...`).
    pub fn bad_reply(line: impl Into<Cow<'static, str>>) -> Error {
        Error {
            side: Side::Upstream,
            retry: false,
            what: What::Line(line.into()),
        }
    }

    /// The node at `addr` is unreachable or its connection failed before the
    /// request was sent: trying again (later, or elsewhere) is safe.
    pub fn unavailable(addr: &str, why: &str) -> Error {
        Error {
            side: Side::Upstream,
            retry: true,
            what: What::Unavailable {
                addr: addr.to_string(),
                why: why.to_string(),
            },
        }
    }

    /// The node at `addr` refused respite's handshake with the error `reply`
    /// (its reply line without `-` and CRLF): respite's own credentials no
    /// longer work there (a changed `requirepass`, a deleted ACL user). The
    /// request was not sent, so trying again (once fixed) is safe.
    pub fn handshake_refused(addr: &str, reply: &str) -> Error {
        Error {
            side: Side::Upstream,
            retry: true,
            what: What::HandshakeRefused {
                addr: addr.to_string(),
                reply: reply.to_string(),
            },
        }
    }

    /// Whether this is [`Error::handshake_refused`].
    pub fn is_handshake_refused(&self) -> bool {
        matches!(self.what, What::HandshakeRefused { .. })
    }

    /// Refused by a limit of respite's own (`upstream.max_pinned_connections`),
    /// `line` in Redis's words; it may pass once connections free up.
    pub fn refused(line: impl Into<Cow<'static, str>>) -> Error {
        Error {
            side: Side::Internal,
            retry: true,
            what: What::Line(line.into()),
        }
    }

    /// A cluster condition (`CLUSTERDOWN ...`, a slot that keeps moving),
    /// in Redis Cluster's words. It may pass once the slot map settles.
    pub fn cluster(line: impl Into<Cow<'static, str>>) -> Error {
        Error {
            side: Side::Cluster,
            retry: true,
            what: What::Line(line.into()),
        }
    }

    /// A control-plane step with a node failed (connect, write, read).
    pub fn io(what: impl fmt::Display) -> Error {
        Error {
            side: Side::Upstream,
            retry: true,
            what: What::Io(what.to_string()),
        }
    }

    /// The proxy's own multi-step operation kept losing to concurrent
    /// writers and gave up; nothing was applied, so trying again is safe.
    pub fn contention(line: impl Into<Cow<'static, str>>) -> Error {
        Error {
            side: Side::Internal,
            retry: true,
            what: What::Line(line.into()),
        }
    }

    /// The proxy's own failure, `line` in Redis's form (`ERR ...`).
    pub fn internal(line: impl Into<Cow<'static, str>>) -> Error {
        Error {
            side: Side::Internal,
            retry: false,
            what: What::Line(line.into()),
        }
    }

    /// The same error, with `context` (say, the node asked) in front of its
    /// text for the log.
    pub fn context(self, context: impl fmt::Display) -> Error {
        Error {
            what: What::Io(format!("{context}: {self}")),
            ..self
        }
    }

    pub fn side(&self) -> Side {
        self.side
    }

    /// Whether sending the request again may succeed and cannot apply it twice.
    pub fn retry_safe(&self) -> bool {
        self.retry
    }

    /// The error line (no `-`, no CRLF), as a client would read it.
    pub fn line(&self) -> Cow<'_, str> {
        match &self.what {
            What::Line(l) => Cow::Borrowed(l),
            What::Unavailable { addr, why } => {
                Cow::Owned(format!("ERR upstream {addr} unavailable: {why}"))
            }
            What::HandshakeRefused { addr, reply } => Cow::Owned(format!(
                "ERR upstream {addr} refused respite's handshake: {reply}"
            )),
            What::Io(text) => Cow::Owned(format!("ERR {text}")),
        }
    }

    /// The Redis error reply for this error: the one rendering of every
    /// error a client receives.
    pub fn reply_bytes(&self) -> Bytes {
        let mut b = BytesMut::new();
        crate::protocol::encode::error(&mut b, &self.line());
        b.freeze()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.what {
            What::Io(text) => f.write_str(text),
            _ => f.write_str(&self.line()),
        }
    }
}

impl std::error::Error for Error {}

/// The error reply for `line` (an error line in Redis's words).
pub fn reply(line: &str) -> Bytes {
    let mut b = BytesMut::new();
    crate::protocol::encode::error(&mut b, line);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_as_redis_replies() {
        assert_eq!(
            &Error::client(SYNTAX).reply_bytes()[..],
            b"-ERR syntax error\r\n"
        );
        let e = Error::unavailable("127.0.0.1:1", "connection refused");
        assert_eq!(
            &e.reply_bytes()[..],
            b"-ERR upstream 127.0.0.1:1 unavailable: connection refused\r\n"
        );
        assert!(e.retry_safe());
        assert_eq!(e.side(), Side::Upstream);
        let h = Error::handshake_refused("127.0.0.1:1", "NOAUTH Authentication required.");
        assert_eq!(
            &h.reply_bytes()[..],
            b"-ERR upstream 127.0.0.1:1 refused respite's handshake: NOAUTH Authentication required.\r\n"
        );
        assert!(h.retry_safe() && h.is_handshake_refused());
        let r = Error::from_reply(b"-WRONGTYPE Operation against a key\r\n");
        assert_eq!(
            &r.reply_bytes()[..],
            b"-WRONGTYPE Operation against a key\r\n"
        );
        assert!(!r.retry_safe());
        assert_eq!(Error::cluster(SLOT_NOT_SERVED).side(), Side::Cluster);
        let io = Error::io("timed out").context("127.0.0.1:2");
        assert_eq!(io.to_string(), "127.0.0.1:2: timed out");
        assert_eq!(&io.reply_bytes()[..], b"-ERR 127.0.0.1:2: timed out\r\n");
    }
}
