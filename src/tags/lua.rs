//! The index functions (`tags.lua`), loaded into every node with
//! `FUNCTION LOAD REPLACE` and called with `FCALL`.
//!
//! Functions rather than `EVALSHA`: Redis replicates and persists them, so a
//! promoted replica or a restarted node with persistence has them already.
//! A node that lost them (restart without persistence, `FUNCTION FLUSH`, a
//! new node) answers `Function not found`: the proxy forgets that it loaded
//! them there, loads them again and runs the call again, so the client gets
//! the normal reply (a forwarded `TAGSET` through a `Redo` of its reply
//! slot, the commands run by a task in `ops::Up::run_raw`).

use crate::error::Error;
use crate::protocol::encode;
use crate::upstream::call::call_one;
use crate::upstream::conn::Conn;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::HashSet;

pub const LIBRARY: &str = include_str!("tags.lua");

/// Nodes (by address) known to have the library loaded.
static LOADED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

pub fn loaded(addr: &str) -> bool {
    LOADED.lock().as_ref().is_some_and(|s| s.contains(addr))
}

pub fn forget(addr: &str) {
    if let Some(s) = LOADED.lock().as_mut() {
        s.remove(addr);
    }
}

/// True for the reply of an `FCALL` whose library is missing on the node.
pub fn is_not_found(reply: &[u8]) -> bool {
    reply
        .strip_prefix(b"-")
        .is_some_and(|line| line.starts_with(b"ERR Function not found"))
}

/// Load the library on `conn`'s node unless it is known to be there.
pub async fn ensure(addr: &str, conn: &Conn) -> Result<(), Error> {
    if loaded(addr) {
        return Ok(());
    }
    let mut b = BytesMut::new();
    encode::command(
        &mut b,
        &[&b"FUNCTION"[..], b"LOAD", b"REPLACE", LIBRARY.as_bytes()],
    );
    let reply = call_one(conn, b.freeze()).await?;
    if reply.first() == Some(&b'-') {
        let text = String::from_utf8_lossy(&reply[1..]).trim_end().to_string();
        return Err(Error::reply(format!(
            "ERR cannot load the tag functions on {addr}: {text}"
        )));
    }
    LOADED
        .lock()
        .get_or_insert_with(HashSet::new)
        .insert(addr.to_string());
    Ok(())
}

/// `FCALL name numkeys keys... args...`
pub fn fcall<K: AsRef<[u8]>, A: AsRef<[u8]>>(name: &str, keys: &[K], args: &[A]) -> Bytes {
    let n = keys.len().to_string();
    let mut parts: Vec<&[u8]> = Vec::with_capacity(3 + keys.len() + args.len());
    parts.push(b"FCALL");
    parts.push(name.as_bytes());
    parts.push(n.as_bytes());
    parts.extend(keys.iter().map(|k| k.as_ref()));
    parts.extend(args.iter().map(|a| a.as_ref()));
    let mut b = BytesMut::new();
    encode::command(&mut b, &parts);
    b.freeze()
}
