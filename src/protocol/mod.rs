//! RESP on the wire: request framing with limits, reply framing, the
//! encoders for replies the proxy writes itself, and owned values for the few
//! replies the proxy must read (topology, command table). Knows bytes and
//! frames only.

pub mod encode;
pub mod reply;
pub mod request;
pub mod value;

pub use reply::ReplyScanner;
pub use request::{Parsed, RequestParser};
pub use value::Value;

/// Malformed input; the text follows Redis's own `Protocol error: ...` messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

impl ProtocolError {
    pub fn new(msg: &str) -> Self {
        ProtocolError(msg.to_string())
    }

    fn expected_dollar(got: u8) -> Self {
        ProtocolError(format!("expected '$', got '{}'", printable(got)))
    }

    fn unexpected_reply_byte(got: u8) -> Self {
        ProtocolError(format!("unexpected reply type byte 0x{got:02x}"))
    }
}

/// A byte as Redis prints it in an error: itself when visible, else a space,
/// so that no CR or LF ever reaches an error line.
fn printable(b: u8) -> char {
    if b.is_ascii_graphic() {
        b as char
    } else {
        ' '
    }
}

/// Which RESP version a client speaks (`HELLO 2|3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Proto {
    #[default]
    Resp2,
    Resp3,
}
