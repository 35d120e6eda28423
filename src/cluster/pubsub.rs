//! Keyspace and keyevent notifications from the whole cluster.
//!
//! Redis publishes `__keyspace@<db>__:<key>` and `__keyevent@<db>__:<event>`
//! on the node where the key lives only (they are not sent over the cluster
//! bus as `PUBLISH` messages are). A client of respite subscribes on its
//! pinned connection (the fixed node); a subscription whose channel or
//! pattern can match such a channel is also made on every other serving
//! primary, on connections of its own whose frames pass through a relay
//! ([`relay`]) that keeps only keyspace and keyevent messages (everything
//! else, confirmations and ordinary messages, comes from the pinned
//! connection, once). Each notification thus reaches the client once, in
//! Redis's own framing (the extra connections speak the client's protocol).

use crate::cluster::topology::Topology;
use crate::protocol::{encode, Value};
use crate::replies::{After, ReplyQueue};
use crate::upstream::conn::{Conn, ConnState};
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeSet, HashMap};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::mpsc;

const PREFIXES: [&[u8]; 2] = [b"__keyspace@", b"__keyevent@"];

/// Whether a channel name (or, with `pattern`, a glob pattern) can be a
/// keyspace or keyevent channel.
pub fn is_keyspace(name: &[u8], pattern: bool) -> bool {
    PREFIXES.iter().any(|p| {
        if pattern {
            glob_can_start_with(name, p)
        } else {
            name.starts_with(p)
        }
    })
}

/// Whether some string beginning with `prefix` matches the glob `pat`
/// (Redis's `stringmatchlen` syntax: `*`, `?`, `[...]`, `\`).
fn glob_can_start_with(pat: &[u8], prefix: &[u8]) -> bool {
    let (mut p, mut s) = (0, 0);
    while s < prefix.len() {
        let Some(&c) = pat.get(p) else {
            return false;
        };
        match c {
            // The star takes the rest of the prefix; anything may follow.
            b'*' => return true,
            b'?' => {
                p += 1;
                s += 1;
            }
            b'[' => {
                let mut q = p + 1;
                let not = pat.get(q) == Some(&b'^');
                if not {
                    q += 1;
                }
                let mut hit = false;
                while let Some(&d) = pat.get(q) {
                    if d == b']' {
                        break;
                    }
                    if d == b'\\' && q + 1 < pat.len() {
                        hit |= pat[q + 1] == prefix[s];
                        q += 2;
                    } else if pat.get(q + 1) == Some(&b'-')
                        && q + 2 < pat.len()
                        && pat[q + 2] != b']'
                    {
                        let (lo, hi) = (d.min(pat[q + 2]), d.max(pat[q + 2]));
                        hit |= (lo..=hi).contains(&prefix[s]);
                        q += 3;
                    } else {
                        hit |= d == prefix[s];
                        q += 1;
                    }
                }
                if hit == not {
                    return false;
                }
                p = q + 1;
                s += 1;
            }
            b'\\' if p + 1 < pat.len() => {
                if pat[p + 1] != prefix[s] {
                    return false;
                }
                p += 2;
                s += 1;
            }
            _ => {
                if c != prefix[s] {
                    return false;
                }
                p += 1;
                s += 1;
            }
        }
    }
    true
}

/// Whether a frame of an extra connection is a keyspace or keyevent
/// message (`message` or `pmessage`, RESP2 array or RESP3 push).
pub fn is_keyspace_message(frame: &[u8]) -> bool {
    if !matches!(frame.first(), Some(b'*' | b'>')) {
        return false;
    }
    let Ok(Value::Array(items)) = Value::decode_exact(frame) else {
        return false;
    };
    let channel = match items.as_slice() {
        [kind, channel, _] if kind.as_bytes().is_some_and(|k| k == b"message") => channel,
        [kind, _, channel, _] if kind.as_bytes().is_some_and(|k| k == b"pmessage") => channel,
        _ => return false,
    };
    channel
        .as_bytes()
        .is_some_and(|c| PREFIXES.iter().any(|p| c.starts_with(p)))
}

/// Passes the keyspace and keyevent messages that reach `src` (the owner
/// queue of an extra connection) on to `dst` (the session's queue), until
/// `src` gets a closing frame ([`stop`]) or `dst` is shut.
pub async fn relay(src: Arc<ReplyQueue>, dst: Arc<ReplyQueue>) {
    let mut frames: Vec<(Bytes, After)> = Vec::new();
    loop {
        poll_fn(|cx| {
            src.drain(cx.waker(), |b, after| frames.push((b, after)));
            if frames.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        for (frame, after) in frames.drain(..) {
            if after == After::Close {
                return;
            }
            if is_keyspace_message(&frame) && !dst.push_stream(frame) {
                return;
            }
        }
    }
}

/// Ends the relay of `src`.
pub fn stop(src: &ReplyQueue) {
    src.push_close(Bytes::new());
}

/// A change to the client's keyspace subscriptions.
#[derive(Debug)]
enum Cmd {
    Subscribe {
        pattern: bool,
        names: Vec<Vec<u8>>,
    },
    /// No names: every channel (or pattern).
    Unsubscribe {
        pattern: bool,
        names: Vec<Vec<u8>>,
    },
}

/// Opens a passthrough connection to a node whose unsolicited frames go to
/// the given queue (a connection of the pinned pool).
pub type Connect = Box<dyn Fn(&Arc<str>, Arc<ReplyQueue>) -> Conn + Send + Sync>;

/// The keyspace subscriptions of one session on the primaries other than
/// its pinned connection's: a task of their own that follows the slot map
/// (a primary that joins is subscribed, one that leaves or fails is
/// dropped). Dropping this ends the task and closes its connections.
#[derive(Debug)]
pub struct Keyspace {
    tx: mpsc::UnboundedSender<Cmd>,
}

impl Keyspace {
    /// Starts the task; `home` is the pinned connection's node (its own
    /// notifications come on the pinned connection).
    pub fn start(
        topo: Arc<Topology>,
        home: Arc<str>,
        dst: Arc<ReplyQueue>,
        connect: Connect,
    ) -> Keyspace {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, topo, home, dst, connect));
        Keyspace { tx }
    }

    /// The client sent `SUBSCRIBE`/`PSUBSCRIBE` (`pattern`) with these
    /// arguments: the keyspace ones are followed on every primary.
    pub fn subscribe(&self, pattern: bool, args: &[&[u8]]) {
        let names: Vec<Vec<u8>> = args
            .iter()
            .filter(|a| is_keyspace(a, pattern))
            .map(|a| a.to_vec())
            .collect();
        if !names.is_empty() {
            let _ = self.tx.send(Cmd::Subscribe { pattern, names });
        }
    }

    /// The client sent `UNSUBSCRIBE`/`PUNSUBSCRIBE` with these arguments.
    pub fn unsubscribe(&self, pattern: bool, args: &[&[u8]]) {
        let names = args.iter().map(|a| a.to_vec()).collect();
        let _ = self.tx.send(Cmd::Unsubscribe { pattern, names });
    }
}

/// One extra node: its connection and the queue its relay drains.
struct Node {
    conn: Conn,
    queue: Arc<ReplyQueue>,
}

impl Node {
    fn send(&self, args: &[&[u8]]) {
        let mut b = BytesMut::new();
        encode::command(&mut b, args);
        let _ = self.conn.submit(&mut b, &mut Vec::new());
    }

    fn close(self) {
        self.conn.close();
        stop(&self.queue);
    }
}

/// How often the task looks at the slot map's version and its connections.
const CHECK_EVERY: Duration = Duration::from_millis(200);

async fn run(
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    topo: Arc<Topology>,
    home: Arc<str>,
    dst: Arc<ReplyQueue>,
    connect: Connect,
) {
    let mut channels: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut patterns: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut nodes: HashMap<Arc<str>, Node> = HashMap::new();
    let mut version = None;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let changed = tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                match cmd {
                    Cmd::Subscribe { pattern, names } => {
                        let set = if pattern { &mut patterns } else { &mut channels };
                        set.extend(names.iter().cloned());
                        let verb: &[u8] = if pattern { b"PSUBSCRIBE" } else { b"SUBSCRIBE" };
                        for n in nodes.values() {
                            let mut args = vec![verb];
                            args.extend(names.iter().map(Vec::as_slice));
                            n.send(&args);
                        }
                    }
                    Cmd::Unsubscribe { pattern, names } => {
                        let set = if pattern { &mut patterns } else { &mut channels };
                        if names.is_empty() {
                            set.clear();
                        } else {
                            for n in &names {
                                set.remove(n);
                            }
                        }
                        let verb: &[u8] = if pattern { b"PUNSUBSCRIBE" } else { b"UNSUBSCRIBE" };
                        for n in nodes.values() {
                            let mut args = vec![verb];
                            args.extend(names.iter().map(Vec::as_slice));
                            n.send(&args);
                        }
                    }
                }
                true
            }
            _ = tick.tick() => {
                // Connections that failed (their node died) are dropped;
                // the node is subscribed again while it is a primary.
                let dead: Vec<Arc<str>> = nodes
                    .iter()
                    .filter(|(_, n)| matches!(n.conn.state(), ConnState::Down | ConnState::Closed))
                    .map(|(a, _)| a.clone())
                    .collect();
                for a in &dead {
                    if let Some(n) = nodes.remove(a) {
                        n.close();
                    }
                }
                !dead.is_empty() || version != Some(topo.version())
            }
        };
        if !changed {
            continue;
        }
        version = Some(topo.version());
        let wanted: Vec<Arc<str>> = if channels.is_empty() && patterns.is_empty() {
            Vec::new()
        } else {
            topo.map()
                .serving_primaries()
                .into_iter()
                .map(Arc::from)
                .filter(|a: &Arc<str>| *a != home)
                .collect()
        };
        let gone: Vec<Arc<str>> = nodes
            .keys()
            .filter(|a| !wanted.contains(a))
            .cloned()
            .collect();
        for a in gone {
            if let Some(n) = nodes.remove(&a) {
                n.close();
            }
        }
        for a in wanted {
            if nodes.contains_key(&a) {
                continue;
            }
            let queue = Arc::new(ReplyQueue::new());
            let conn = connect(&a, queue.clone());
            if conn.is_refused() {
                // upstream.max_pinned_connections: tried again on the next change.
                version = None;
                continue;
            }
            tokio::spawn(relay(queue.clone(), dst.clone()));
            let node = Node { conn, queue };
            for (set, verb) in [(&channels, &b"SUBSCRIBE"[..]), (&patterns, b"PSUBSCRIBE")] {
                if !set.is_empty() {
                    let mut args = vec![verb];
                    args.extend(set.iter().map(Vec::as_slice));
                    node.send(&args);
                }
            }
            nodes.insert(a, node);
        }
    }
    for (_, n) in nodes.drain() {
        n.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_subscriptions_are_keyspace_ones() {
        for p in [
            &b"*"[..],
            b"__key*__:*",
            b"__keyspace@0__:*",
            b"__keyevent@*",
            b"?_key*",
            b"__key[a-z]pace@*",
            b"__keyspace@",
        ] {
            assert!(is_keyspace(p, true), "{}", String::from_utf8_lossy(p));
        }
        for p in [
            &b"news.*"[..],
            b"__keyspace",
            b"_x*",
            b"__keyspaces*",
            b"[^_]*",
        ] {
            assert!(!is_keyspace(p, true), "{}", String::from_utf8_lossy(p));
        }
        assert!(is_keyspace(b"__keyevent@0__:set", false));
        assert!(!is_keyspace(b"__key*", false));
    }

    #[test]
    fn only_keyspace_messages_pass() {
        assert!(is_keyspace_message(
            b"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$18\r\n__keyevent@0__:set\r\n$1\r\nk\r\n"
        ));
        assert!(is_keyspace_message(
            b">3\r\n$7\r\nmessage\r\n$18\r\n__keyevent@0__:set\r\n$1\r\nk\r\n"
        ));
        assert!(!is_keyspace_message(
            b"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$4\r\nnews\r\n$1\r\nk\r\n"
        ));
        assert!(!is_keyspace_message(
            b"*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:1\r\n"
        ));
    }
}
