//! The background sweep: removes index entries whose keys expired or were
//! deleted without the proxy, and directory slots whose entry sets are gone.
//!
//! Every worker-0 of every proxy instance runs it (the server's
//! `tag_sweeper` calls [`sweep_once`] every `tags.sweep_interval`); a lease key
//! (`<prefix>sweep`, `SET NX PX interval`) lets one instance sweep per
//! interval, and every removal is a re-check inside a function (the key is
//! dead *now*; the directory generation did not move), so two sweeps, or a
//! sweep racing `TAGSET`, never lose a live registration. The pace is held
//! to `tags.sweep_rate` entries checked per second.

use super::layout::IndexKey;
use super::lua::fcall;
use super::ops::{command, Up};
use crate::cluster::key_slot;
use crate::error::Error;
use crate::protocol::Value;
use crate::router::route::Route;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One sweep over every database (standalone) or primary (cluster) if this
/// instance holds the lease: the number of entries removed.
pub async fn sweep_once(route: &Route, lease: Duration) -> Result<Option<u64>, Error> {
    let up0 = Up::new(route.clone(), None, 0, 0);
    let lock = up0.layout.sweep_lock();
    let me = format!("{}", std::process::id());
    let ms = lease.as_millis().max(1).to_string();
    let req = command(&[
        &b"SET"[..],
        &lock,
        me.as_bytes(),
        b"NX",
        b"PX",
        ms.as_bytes(),
    ]);
    if up0.run(key_slot(&lock), &req).await? == Value::Null {
        return Ok(None);
    }
    let dbs = if up0.cluster() {
        vec![0]
    } else {
        databases(&up0).await?
    };
    let mut pace = Pace::new(route.config().tags.sweep_rate);
    let mut removed = 0;
    for db in dbs {
        let up = Up::new(route.clone(), None, db, 0);
        for addr in up.primaries() {
            removed += sweep_node(&up, &addr, &mut pace).await?;
        }
    }
    Ok(Some(removed))
}

/// Databases holding keys (`INFO keyspace`).
async fn databases(up: &Up) -> Result<Vec<u32>, Error> {
    let v = up.run(0, &command(&[&b"INFO"[..], b"keyspace"])).await?;
    let text = String::from_utf8_lossy(v.as_bytes().unwrap_or_default()).into_owned();
    let mut dbs: Vec<u32> = text
        .lines()
        .filter_map(|l| l.strip_prefix("db")?.split(':').next()?.parse().ok())
        .collect();
    if dbs.is_empty() {
        dbs.push(0);
    }
    Ok(dbs)
}

/// Holds the sweep to `rate` entries per second.
struct Pace {
    rate: f64,
    start: Instant,
    done: u64,
}

impl Pace {
    fn new(rate: usize) -> Pace {
        Pace {
            rate: rate.max(1) as f64,
            start: Instant::now(),
            done: 0,
        }
    }

    fn step(&self) -> usize {
        ((self.rate / 10.0) as usize).clamp(1, 1000)
    }

    async fn spent(&mut self, n: u64) {
        self.done += n;
        let due = Duration::from_secs_f64(self.done as f64 / self.rate);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

/// `SCAN` pattern matching the prefix literally.
fn pattern(prefix: &str) -> Vec<u8> {
    let mut p = Vec::new();
    for &c in prefix.as_bytes() {
        if matches!(c, b'*' | b'?' | b'[' | b']' | b'\\') {
            p.push(b'\\');
        }
        p.push(c);
    }
    p.push(b'*');
    p
}

async fn sweep_node(up: &Arc<Up>, addr: &str, pace: &mut Pace) -> Result<u64, Error> {
    let conn = up.conn(addr);
    super::lua::ensure(addr, &conn).await?;
    let pat = pattern(&up.layout.prefix);
    let mut cursor = b"0".to_vec();
    let mut removed = 0;
    loop {
        let req = command(&[&b"SCAN"[..], &cursor, b"MATCH", &pat, b"COUNT", b"1000"]);
        let reply = crate::upstream::call::call_one(&conn, req).await?;
        let v = Value::decode_exact(&reply).map_err(|e| Error::bad_reply(e.to_string()))?;
        let (next, keys) = match v.as_array() {
            Some([c, Value::Array(k)]) => (c.as_bytes().unwrap_or(b"0").to_vec(), k.clone()),
            _ => return Err(Error::bad_reply("unexpected SCAN reply")),
        };
        for k in keys.iter().filter_map(|k| k.as_bytes()) {
            match up.layout.classify(k) {
                Some(IndexKey::Entries(slot, tag)) => {
                    removed += sweep_entries(up, slot, tag, pace).await?;
                }
                Some(IndexKey::Dir(tag)) if up.cluster() => {
                    sweep_dir(up, tag).await?;
                }
                _ => {}
            }
        }
        if next == b"0" {
            return Ok(removed);
        }
        cursor = next;
    }
}

/// Re-check one entry set: expired scores first, then a scan for keys
/// deleted by hand; in cluster mode also finish a directory confirmation a
/// stopped proxy left pending.
async fn sweep_entries(up: &Arc<Up>, slot: u16, tag: &[u8], pace: &mut Pace) -> Result<u64, Error> {
    let b = up.bucket(slot);
    let z = b.zset(tag);
    let n = pace.step().to_string();
    let mut cursor = b"0".to_vec();
    let mut removed = 0u64;
    loop {
        let req = fcall(
            "respite_tagsweep",
            &[&z],
            &[&b.zp[..], &b.rp, &b.fl, n.as_bytes(), &cursor],
        );
        let v = up.run(slot, &req).await?;
        let (r, checked, next) = match v.as_array() {
            Some([Value::Int(r), Value::Int(c), next]) => (
                *r as u64,
                *c as u64,
                next.as_bytes().unwrap_or(b"0").to_vec(),
            ),
            _ => return Err(Error::bad_reply("unexpected reply from respite_tagsweep")),
        };
        removed += r;
        pace.spent(checked.max(1)).await;
        if next == b"0" {
            break;
        }
        cursor = next;
    }
    if up.cluster() {
        let req = command(&[&b"HGET"[..], &b.fl, tag]);
        if let Value::Bulk(flag) = up.run(slot, &req).await? {
            if flag != b"ok" {
                up.confirm(slot, vec![(tag.to_vec(), flag)]).await?;
            }
        }
    }
    Ok(removed)
}

/// Drop directory slots whose entry sets are empty (generation-checked).
async fn sweep_dir(up: &Arc<Up>, tag: &[u8]) -> Result<(), Error> {
    for (slot, gen) in up.dir_slots(tag).await? {
        let b = up.bucket(slot);
        let req = fcall("respite_tagcard", &[b.zset(tag)], &[] as &[&[u8]]);
        if up.run(slot, &req).await?.as_int() == Some(0) {
            up.dir_prune(tag, slot, &gen).await?;
        }
    }
    Ok(())
}
