//! `-MOVED slot host:port` and `-ASK slot host:port`: a node telling the
//! client that another node serves the slot, for good (`MOVED`: update the
//! map and retry) or for the next command only (`ASK`: a slot in migration;
//! retry once on the target, preceded by `ASKING`).
//!
//! The one retry policy for them, used by client requests (the reply
//! queue hands a redirect back to the session) and by the proxy's own
//! multi-step commands (`tags::ops`): follow at most [`MAX_REDIRECTS`]
//! redirects per request; `TRYAGAIN`/`CLUSTERDOWN` (and a script's
//! "non local key" during a migration) wait [`backoff`] first.

use super::join_host_port;
use super::slots::{NodeAddr, SLOT_COUNT};
use std::time::Duration;

/// Redirects followed for one request before its error is given to the client
/// (with the [`backoff`] of `CLUSTERDOWN`/`TRYAGAIN` retries, about 1.5 s in all).
pub const MAX_REDIRECTS: u8 = 6;

/// The pause before resending after the `attempt`-th (from 0) `TRYAGAIN` or
/// `CLUSTERDOWN`: 25 ms, doubling (25, 50, 100, ... 800 ms).
pub fn backoff(attempt: u8) -> Duration {
    Duration::from_millis(25u64 << attempt.min(5))
}

/// An error reply (as read, `-` and CRLF included) that the policy follows:
/// `MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`.
pub fn is_redirect(reply: &[u8]) -> bool {
    reply.starts_with(b"-MOVED ")
        || reply.starts_with(b"-ASK ")
        || reply.starts_with(b"-TRYAGAIN")
        || reply.starts_with(b"-CLUSTERDOWN")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    Moved,
    Ask,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub kind: RedirectKind,
    pub slot: u16,
    /// Where to retry, as `host:port`.
    pub addr: NodeAddr,
}

/// Whether a reply is a cluster redirect (`-MOVED`, `-ASK`). A client of
/// respite sees one only as the reply to a command queued inside `MULTI`,
/// as Redis Cluster would give it there; anywhere else respite follows it,
/// and one it could not follow is turned into [`unfollowed`].
#[inline]
pub fn is_redirect_reply(reply: &[u8]) -> bool {
    reply.starts_with(b"-MOVED ") || reply.starts_with(b"-ASK ")
}

/// The error a client gets instead of a redirect respite did not follow
/// (the slot kept moving, or no node was known for it): `TRYAGAIN`, which
/// cluster-aware clients retry and others report, naming the redirect.
pub fn unfollowed(reply: &[u8]) -> bytes::Bytes {
    let line = reply.strip_prefix(b"-").unwrap_or(reply);
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    let mut out = Vec::with_capacity(line.len() + 64);
    out.extend_from_slice(b"-TRYAGAIN respite could not follow the cluster redirect (");
    out.extend(line.iter().copied().filter(|&c| c != b'\r' && c != b'\n'));
    out.extend_from_slice(b")\r\n");
    out.into()
}

/// Parses an error reply line, with or without its leading `-` and trailing
/// CRLF. `None` for any other error, or for a redirect that does not parse
/// (then the error goes to the client as it is rather than sending the
/// command to a guessed node).
///
/// A node whose own address is unknown to the cluster
/// (`cluster-preferred-endpoint-type unknown-endpoint`) sends `:port` with no
/// host, meaning "the host you are talking to": pass that host as `default_host`.
pub fn parse_redirect(err_line: &[u8], default_host: &str) -> Option<Redirect> {
    let line = err_line.strip_prefix(b"-").unwrap_or(err_line);
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let kind = match parts.next()? {
        "MOVED" => RedirectKind::Moved,
        "ASK" => RedirectKind::Ask,
        _ => return None,
    };
    let slot: u16 = parts.next()?.parse().ok().filter(|s| *s < SLOT_COUNT)?;
    let target = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    // rsplit: an IPv6 address (Redis prints it without brackets) has colons too.
    let (host, port) = target.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = if host.is_empty() { default_host } else { host };
    Some(Redirect {
        kind,
        slot,
        addr: join_host_port(host, port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(kind: RedirectKind, slot: u16, addr: &str) -> Option<Redirect> {
        Some(Redirect {
            kind,
            slot,
            addr: addr.into(),
        })
    }

    #[test]
    fn moved_and_ask() {
        use RedirectKind::*;
        assert_eq!(
            parse_redirect(b"-MOVED 3999 127.0.0.1:6381\r\n", "h"),
            redirect(Moved, 3999, "127.0.0.1:6381")
        );
        assert_eq!(
            parse_redirect(b"ASK 0 10.1.2.3:7000", "h"),
            redirect(Ask, 0, "10.1.2.3:7000")
        );
        assert_eq!(
            parse_redirect(b"-MOVED 16383 redis-2.example:6379", "h"),
            redirect(Moved, 16383, "redis-2.example:6379")
        );
    }

    #[test]
    fn empty_host_means_the_replying_host() {
        // What redis-server 7.0 sends with cluster-preferred-endpoint-type unknown-endpoint.
        assert_eq!(
            parse_redirect(b"-MOVED 12182 :27103\r\n", "10.0.0.5"),
            redirect(RedirectKind::Moved, 12182, "10.0.0.5:27103")
        );
    }

    #[test]
    fn ipv6_targets_get_brackets() {
        assert_eq!(
            parse_redirect(b"-ASK 5 ::1:7000", "h"),
            redirect(RedirectKind::Ask, 5, "[::1]:7000")
        );
        assert_eq!(
            parse_redirect(b"-ASK 5 [fe80::1]:7000", "h"),
            redirect(RedirectKind::Ask, 5, "[fe80::1]:7000")
        );
    }

    #[test]
    fn other_errors_and_malformed_redirects() {
        for line in [
            &b"-ERR unknown command"[..],
            b"-CROSSSLOT Keys in request don't hash to the same slot",
            b"-TRYAGAIN Multiple keys request during rehashing of slot",
            b"-MOVED",
            b"-MOVED 3999",
            b"-MOVED x 127.0.0.1:1",
            b"-MOVED 16384 127.0.0.1:1",
            b"-MOVED -1 127.0.0.1:1",
            b"-MOVED 1 127.0.0.1",
            b"-MOVED 1 127.0.0.1:0",
            b"-MOVED 1 127.0.0.1:65536",
            b"-MOVED 1 127.0.0.1:1 extra",
            b"-moved 1 127.0.0.1:1",
            b"-MOVED 1 \xff:1",
            b"",
        ] {
            assert_eq!(
                parse_redirect(line, "h"),
                None,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
