//! The tag commands that take several Redis calls, run by a task with the
//! proxy's own connections (RESP2): invalidation, listings, `TAGADD`, the
//! directory confirmation after a `TAGSET` in cluster mode.
//!
//! Every call goes to the node serving its slot and follows `MOVED`, `ASK`,
//! `TRYAGAIN`/`CLUSTERDOWN` (and a script's "non local key" during a slot
//! migration) with backoff, so a reshard under way only slows them down.

use super::layout::{decode_tags, Bucket, Layout};
use super::lua::{self, fcall};
use crate::cluster::redirect::{backoff, MAX_REDIRECTS};
use crate::cluster::{key_slot, parse_redirect, RedirectKind};
use crate::error::Error;
use crate::protocol::{encode, Proto, Value};
use crate::router::route::Route;
use crate::upstream::call::{call, call_one};
use crate::upstream::conn::Conn;
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Requests in flight per node in the first round of an invalidation, each
/// limited to `batch / INVAL_DEPTH` keys (most slots hold few entries); slots
/// with more left go on one full-batch call at a time. Redis runs a
/// connection's pipeline back to back, so either way about `tags.batch` keys
/// are deleted between two chances for other clients.
const INVAL_DEPTH: usize = 32;
/// Requests in flight per node for small calls (listing pages, confirmations).
const SMALL_DEPTH: usize = 64;
/// Times one call loads a vanished function library again.
const RELOADS: u8 = 2;

/// What to do about a reply.
enum Retry {
    No,
    At(String, bool),
    Later,
    Reload,
}

/// How `TAGSET` stores a value: `(key, value)` to the bytes to store, or
/// `None` to store it as it is (the proxy's value transforms: compression).
pub type Pack = Arc<dyn Fn(&[u8], &[u8]) -> Option<Vec<u8>> + Send + Sync>;

/// The proxy's side of the tag commands: connections, layout, settings.
pub struct Up {
    route: Route,
    pack: Option<Pack>,
    db: u32,
    id: u64,
    pub layout: Layout,
    /// Standalone: the one bucket, named once.
    flat: Option<Bucket>,
}

impl Up {
    /// Calls for database `db` on behalf of session `id` (0: the proxy's own).
    pub fn new(route: Route, pack: Option<Pack>, db: u32, id: u64) -> Arc<Up> {
        let layout = Layout::new(&route.config().tags.prefix, route.cluster());
        let flat = (!layout.cluster).then(|| layout.bucket(0));
        Arc::new(Up {
            route,
            pack,
            db,
            id,
            layout,
            flat,
        })
    }

    pub fn db(&self) -> u32 {
        self.db
    }

    /// The index keys of `slot` (standalone: the one bucket, not rebuilt).
    pub fn bucket(&self, slot: u16) -> std::borrow::Cow<'_, Bucket> {
        match &self.flat {
            Some(b) => std::borrow::Cow::Borrowed(b),
            None => std::borrow::Cow::Owned(self.layout.bucket(slot)),
        }
    }

    /// The value bytes `TAGSET` stores: the one place a value passes on its
    /// way to Redis, so value transforms (compression) apply to `TAGSET` as
    /// to `SET`.
    pub fn stored_value<'a>(&self, key: &[u8], value: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        match self.pack.as_ref().and_then(|p| p(key, value)) {
            Some(packed) => std::borrow::Cow::Owned(packed),
            None => std::borrow::Cow::Borrowed(value),
        }
    }

    pub fn cluster(&self) -> bool {
        self.route.cluster()
    }

    pub fn batch(&self) -> usize {
        self.route.config().tags.batch.max(1)
    }

    /// The node serving `slot` (standalone: the node).
    pub fn owner(&self, slot: u16) -> Result<String, Error> {
        self.route.owner(slot)
    }

    /// Every primary serving slots (standalone: the node).
    pub fn primaries(&self) -> Vec<String> {
        self.route.primaries()
    }

    pub fn conn(&self, addr: &str) -> Conn {
        self.route.conn(addr, self.db, self.id)
    }

    fn retry_of(&self, reply: &[u8]) -> Retry {
        if reply.first() != Some(&b'-') {
            return Retry::No;
        }
        if lua::is_not_found(reply) {
            return Retry::Reload;
        }
        let line = reply[1..].strip_suffix(b"\r\n").unwrap_or(&reply[1..]);
        if line.starts_with(b"TRYAGAIN")
            || line.starts_with(b"CLUSTERDOWN")
            || contains(line, b"non local key")
        {
            self.route.request_refresh();
            return Retry::Later;
        }
        if line.starts_with(b"MOVED ") || line.starts_with(b"ASK ") {
            let host = self.route.config().upstream.default_host();
            if let Some(r) = parse_redirect(line, &host) {
                return match r.kind {
                    RedirectKind::Moved => {
                        self.route.moved(r.slot, &r.addr);
                        Retry::At(r.addr, false)
                    }
                    RedirectKind::Ask => Retry::At(r.addr, true),
                };
            }
        }
        Retry::No
    }

    /// One request to the node serving `slot`, following redirects, raw reply.
    /// The retry policy is the client requests' one
    /// ([`crate::cluster::redirect`]): at most `MAX_REDIRECTS` redirects and
    /// waits, with its backoff. A function library found missing is loaded
    /// again (at most [`RELOADS`] times per call).
    pub async fn run_raw(&self, slot: u16, req: &Bytes) -> Result<Bytes, Error> {
        let mut target: Option<(String, bool)> = None;
        let mut redirects = 0u8;
        let mut reloads = 0u8;
        loop {
            let (addr, asking) = match target.take() {
                Some(t) => t,
                None => (self.owner(slot)?, false),
            };
            let conn = self.conn(&addr);
            lua::ensure(&addr, &conn).await?;
            let reply = if asking {
                let asking = Bytes::from_static(b"*1\r\n$6\r\nASKING\r\n");
                let r = call(&conn, &[asking, req.clone()]).await?;
                r.into_iter().nth(1).unwrap_or_default()
            } else {
                call_one(&conn, req.clone()).await?
            };
            let retry = self.retry_of(&reply);
            let give_up = match retry {
                Retry::No => return Ok(reply),
                Retry::Reload => reloads >= RELOADS,
                Retry::At(..) | Retry::Later => redirects >= MAX_REDIRECTS,
            };
            if give_up {
                // Redirected or told to wait more often than followed.
                return Err(Error::cluster(error_text(&reply)));
            }
            match retry {
                Retry::At(a, ask) => {
                    target = Some((a, ask));
                    redirects += 1;
                }
                Retry::Later => {
                    tokio::time::sleep(backoff(redirects)).await;
                    redirects += 1;
                }
                Retry::Reload => {
                    lua::forget(&addr);
                    reloads += 1;
                }
                Retry::No => {}
            }
        }
    }

    /// [`Up::run_raw`], decoded; an error reply is `Err`.
    pub async fn run(&self, slot: u16, req: &Bytes) -> Result<Value, Error> {
        decode(&self.run_raw(slot, req).await?)
    }

    /// Many requests (slot, request): grouped by node, pipelined `depth` at a
    /// time, nodes in parallel. Replies in request order.
    pub async fn run_many(
        self: &Arc<Self>,
        reqs: Vec<(u16, Bytes)>,
        depth: usize,
    ) -> Vec<Result<Value, Error>> {
        let mut by_node: HashMap<String, Vec<usize>> = HashMap::new();
        let mut out: Vec<Result<Value, Error>> = Vec::with_capacity(reqs.len());
        for (i, (slot, _)) in reqs.iter().enumerate() {
            match self.owner(*slot) {
                Ok(a) => by_node.entry(a).or_default().push(i),
                Err(e) => {
                    out.resize_with(i + 1, || Err(Error::internal("not run")));
                    out[i] = Err(e);
                }
            }
        }
        out.resize_with(reqs.len(), || Err(Error::internal("not run")));
        let reqs = Arc::new(reqs);
        let mut set = tokio::task::JoinSet::new();
        for (addr, idx) in by_node {
            let up = self.clone();
            let reqs = reqs.clone();
            set.spawn(async move {
                let mut done = Vec::with_capacity(idx.len());
                let conn = up.conn(&addr);
                let loaded = lua::ensure(&addr, &conn).await;
                for chunk in idx.chunks(depth.max(1)) {
                    let batch: Vec<Bytes> = chunk.iter().map(|&i| reqs[i].1.clone()).collect();
                    let replies = match &loaded {
                        Ok(()) => call(&conn, &batch).await,
                        Err(e) => Err(e.clone()),
                    };
                    for (n, &i) in chunk.iter().enumerate() {
                        let r = match &replies {
                            Ok(r) => {
                                let reply = r.get(n).cloned().unwrap_or_default();
                                match up.retry_of(&reply) {
                                    Retry::No => decode(&reply),
                                    _ => up.run(reqs[i].0, &reqs[i].1).await,
                                }
                            }
                            Err(e) => Err(e.clone()),
                        };
                        done.push((i, r));
                    }
                }
                done
            });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(done) = r {
                for (i, v) in done {
                    out[i] = v;
                }
            }
        }
        out
    }

    /// The slots (with generation) a tag's directory lists; standalone: one bucket.
    pub async fn dir_slots(&self, tag: &[u8]) -> Result<Vec<(u16, Vec<u8>)>, Error> {
        if !self.cluster() {
            return Ok(vec![(0, Vec::new())]);
        }
        let dir = self.layout.dir(tag);
        let slot = key_slot(&dir);
        let mut out = Vec::new();
        let mut cursor = b"0".to_vec();
        let count = self.batch().to_string();
        loop {
            let req = command(&[&b"HSCAN"[..], &dir, &cursor, b"COUNT", count.as_bytes()]);
            let v = self.run(slot, &req).await?;
            let (next, items) = match v.as_array() {
                Some([c, Value::Array(items)]) => (c.as_bytes().unwrap_or(b"0").to_vec(), items),
                _ => return Err(Error::bad_reply("ERR unexpected HSCAN reply")),
            };
            for pair in items.chunks(2) {
                if let [f, g] = pair {
                    let s = f
                        .as_bytes()
                        .and_then(|f| std::str::from_utf8(f).ok())
                        .and_then(|f| f.parse::<u16>().ok());
                    if let Some(s) = s {
                        out.push((s, g.as_bytes().unwrap_or_default().to_vec()));
                    }
                }
            }
            if next == b"0" {
                break;
            }
            cursor = next;
        }
        Ok(out)
    }

    /// Drop `slot` from `tag`'s directory if no TAGSET registered it since
    /// `gen` was read (the slot's entry set was seen empty after that read).
    pub async fn dir_prune(&self, tag: &[u8], slot: u16, gen: &[u8]) -> Result<(), Error> {
        if !self.cluster() {
            return Ok(());
        }
        let dir = self.layout.dir(tag);
        let s = slot.to_string();
        let req = fcall("respite_tagdirprune", &[&dir], &[s.as_bytes(), gen]);
        self.run(key_slot(&dir), &req).await.map(|_| ())
    }

    /// [`Up::dir_prune`] for many (tag, slot, generation), pipelined.
    pub async fn dir_prune_many(
        self: &Arc<Self>,
        prunes: Vec<(Vec<u8>, u16, Vec<u8>)>,
    ) -> Result<(), Error> {
        if !self.cluster() || prunes.is_empty() {
            return Ok(());
        }
        let reqs = prunes
            .iter()
            .map(|(tag, slot, gen)| {
                let dir = self.layout.dir(tag);
                let s = slot.to_string();
                let req = fcall("respite_tagdirprune", &[&dir], &[s.as_bytes(), gen]);
                (key_slot(&dir), req)
            })
            .collect();
        for r in self.run_many(reqs, SMALL_DEPTH).await {
            r?;
        }
        Ok(())
    }

    /// Register `slot` in the directories of `pending` tags (bumping their
    /// generation), then mark them confirmed in the slot, so later TAGSETs
    /// there skip this step.
    pub async fn confirm(
        self: &Arc<Self>,
        slot: u16,
        pending: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), Error> {
        if pending.is_empty() || !self.cluster() {
            return Ok(());
        }
        let s = slot.to_string();
        let reqs = pending
            .iter()
            .map(|(t, _)| {
                let dir = self.layout.dir(t);
                let req = command(&[&b"HINCRBY"[..], &dir, s.as_bytes(), b"1"]);
                (key_slot(&dir), req)
            })
            .collect();
        for r in self.run_many(reqs, SMALL_DEPTH).await {
            r?;
        }
        let b = self.bucket(slot);
        let mut args: Vec<&[u8]> = vec![&b.zp];
        for (t, tok) in &pending {
            args.push(t);
            args.push(tok);
        }
        let req = fcall("respite_tagconfirm", &[&b.fl], &args);
        self.run(slot, &req).await.map(|_| ())
    }

    /// `TAGINVAL`: the number of keys deleted (the caller counts them).
    pub async fn taginval(self: &Arc<Self>, tags: Vec<Vec<u8>>) -> Result<i64, Error> {
        // slot -> tags with entries there (and the directory generation read).
        let mut slots: BTreeMap<u16, Vec<(usize, Vec<u8>)>> = BTreeMap::new();
        for (i, t) in tags.iter().enumerate() {
            for (slot, gen) in self.dir_slots(t).await? {
                slots.entry(slot).or_default().push((i, gen));
            }
        }
        let mut first = self.cluster();
        let mut deleted = 0i64;
        let mut todo: Vec<u16> = slots.keys().copied().collect();
        while !todo.is_empty() {
            let (depth, limit) = if first {
                (INVAL_DEPTH, (self.batch() / INVAL_DEPTH).max(1))
            } else {
                (1, self.batch())
            };
            first = false;
            let batch = limit.to_string();
            let reqs: Vec<(u16, Bytes)> = todo
                .iter()
                .map(|&slot| {
                    let b = self.bucket(slot);
                    let zsets: Vec<Vec<u8>> = slots[&slot]
                        .iter()
                        .map(|(i, _)| b.zset(&tags[*i]))
                        .collect();
                    (
                        slot,
                        fcall(
                            "respite_taginval",
                            &zsets,
                            &[&b.zp[..], &b.rp, &b.fl, batch.as_bytes()],
                        ),
                    )
                })
                .collect();
            let replies = self.run_many(reqs, depth).await;
            let mut next = Vec::new();
            let mut prunes = Vec::new();
            for (slot, r) in todo.iter().zip(replies) {
                let v = r?;
                let (d, left) = pair(&v)?;
                deleted += d;
                if left > 0 {
                    next.push(*slot);
                } else {
                    for (i, gen) in &slots[slot] {
                        prunes.push((tags[*i].clone(), *slot, gen.clone()));
                    }
                }
            }
            self.dir_prune_many(prunes).await?;
            todo = next;
        }
        Ok(deleted)
    }

    /// `TAGKEYS`: the live keys under `tag` (dead entries pruned on the way).
    pub async fn tagkeys(self: &Arc<Self>, tag: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        let dir = self.dir_slots(tag).await?;
        let n = self.batch();
        let count = n.to_string();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        // (slot, generation, offset)
        let mut todo: Vec<(u16, Vec<u8>, usize)> =
            dir.into_iter().map(|(s, g)| (s, g, 0)).collect();
        while !todo.is_empty() {
            let reqs = todo
                .iter()
                .map(|(slot, _, off)| {
                    let b = self.bucket(*slot);
                    let o = off.to_string();
                    (
                        *slot,
                        fcall(
                            "respite_tagkeys",
                            &[b.zset(tag)],
                            &[&b.zp[..], &b.rp, &b.fl, o.as_bytes(), count.as_bytes()],
                        ),
                    )
                })
                .collect();
            let replies = self.run_many(reqs, SMALL_DEPTH).await;
            let mut next = Vec::new();
            let mut prunes = Vec::new();
            for ((slot, gen, off), r) in todo.into_iter().zip(replies) {
                let v = r?;
                let (read, live) = match v.as_array() {
                    Some([Value::Int(read), Value::Array(live)]) => (*read as usize, live),
                    _ => {
                        return Err(Error::bad_reply(
                            "ERR unexpected reply from respite_tagkeys",
                        ))
                    }
                };
                for k in live {
                    if let Some(k) = k.as_bytes() {
                        if seen.insert(k.to_vec()) {
                            out.push(k.to_vec());
                        }
                    }
                }
                if read >= n {
                    next.push((slot, gen, off + live.len()));
                } else if off == 0 && read == 0 {
                    prunes.push((tag.to_vec(), slot, gen));
                }
            }
            self.dir_prune_many(prunes).await?;
            todo = next;
        }
        Ok(out)
    }

    /// `TAGSOF`: the key's tags (none when it does not exist).
    pub async fn tagsof(&self, key: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        let slot = key_slot(key);
        let b = self.bucket(slot);
        let req = fcall(
            "respite_tagsof",
            &[key, &b.record(key)],
            &[&b.zp[..], &b.rp, &b.fl],
        );
        Ok(match self.run(slot, &req).await? {
            Value::Bulk(rec) => decode_tags(&rec),
            _ => Vec::new(),
        })
    }

    /// `TAGADD`: tags newly added (0 when the key does not exist).
    pub async fn tagadd(self: &Arc<Self>, key: &[u8], tags: &[&[u8]]) -> Result<i64, Error> {
        let slot = key_slot(key);
        let b = self.bucket(slot);
        let mut keys = vec![key.to_vec(), b.record(key)];
        keys.extend(tags.iter().map(|t| b.zset(t)));
        if self.cluster() {
            keys.push(b.fl.clone());
        }
        let mut args: Vec<&[u8]> = vec![&b.zp, &b.rp, &b.fl];
        args.extend(tags.iter().copied());
        let req = fcall("respite_tagadd", &keys, &args);
        let v = self.run(slot, &req).await?;
        let items = v.as_array().unwrap_or_default();
        let added = items.first().and_then(|v| v.as_int()).unwrap_or(0);
        let pending = pending_of(items.get(1..).unwrap_or_default(), tags);
        self.confirm(slot, pending).await?;
        Ok(added)
    }

    /// After a `TAGSET` sent as a transaction replaced a key's tags: the key
    /// leaves the entry sets of `gone` (re-checked against its record).
    pub async fn tagdrop(&self, key: &[u8], gone: Vec<Vec<u8>>) -> Result<(), Error> {
        let slot = key_slot(key);
        let b = self.bucket(slot);
        let mut keys = vec![key.to_vec(), b.record(key)];
        keys.extend(gone.iter().map(|t| b.zset(t)));
        let mut args: Vec<&[u8]> = vec![&b.zp, &b.fl];
        args.extend(gone.iter().map(|t| &t[..]));
        self.run(slot, &fcall("respite_tagdrop", &keys, &args))
            .await
            .map(|_| ())
    }

    /// After a cluster `TAGSET`'s function call: retry it on redirects or a
    /// missing library, confirm directory entries, and give SET's reply.
    pub async fn tagset_finish(
        self: &Arc<Self>,
        slot: u16,
        req: Bytes,
        tags: Vec<Vec<u8>>,
        first: Bytes,
        proto: Proto,
    ) -> Bytes {
        let reply = match self.retry_of(&first) {
            Retry::No => first,
            // Reload: run_raw loads the library again if the call still
            // finds it missing. Not forgotten here: after a FUNCTION FLUSH
            // every TAGSET in flight comes here, and the first to reload
            // serves them all.
            _ => match self.run_raw(slot, &req).await {
                Ok(r) => r,
                Err(e) => return e.reply_bytes(),
            },
        };
        if !reply.starts_with(b"*") {
            // +OK, nil or an error: SET's own reply (nil in the client's protocol).
            if proto == Proto::Resp3 && &reply[..] == b"$-1\r\n" {
                return Bytes::from_static(b"_\r\n");
            }
            return reply;
        }
        let v = match decode(&reply) {
            Ok(v) => v,
            Err(e) => return e.reply_bytes(),
        };
        let items = v.as_array().unwrap_or_default();
        let t: Vec<&[u8]> = tags.iter().map(|t| &t[..]).collect();
        let pending = pending_of(items.get(1..).unwrap_or_default(), &t);
        match self.confirm(slot, pending).await {
            Ok(()) => Bytes::from_static(b"+OK\r\n"),
            Err(e) => e.reply_bytes(),
        }
    }
}

impl Up {
    /// `TAGSET` with the registration *before* the write, in separate calls:
    /// the ordering hand-made tag schemes use, and the one the race test must
    /// catch ([`super::broken_order`]). Never used otherwise.
    pub async fn tagset_broken(
        self: &Arc<Self>,
        set: Vec<Vec<u8>>,
        tags: Vec<Vec<u8>>,
        proto: Proto,
    ) -> Result<Bytes, Error> {
        let key = set[1].clone();
        let slot = key_slot(&key);
        let b = self.bucket(slot);
        for t in &tags {
            let req = command(&[&b"ZADD"[..], &b.zset(t), b"inf", &key]);
            self.run(slot, &req).await?;
            if self.cluster() {
                let dir = self.layout.dir(t);
                let s = slot.to_string();
                let req = command(&[&b"HINCRBY"[..], &dir, s.as_bytes(), b"1"]);
                self.run(key_slot(&dir), &req).await?;
            }
        }
        let rec = super::layout::encode_tags(&tags);
        self.run(slot, &command(&[&b"SET"[..], &b.record(&key), &rec]))
            .await?;
        let parts: Vec<&[u8]> = set.iter().map(|p| &p[..]).collect();
        let reply = self.run_raw(slot, &command(&parts)).await?;
        if proto == Proto::Resp3 && &reply[..] == b"$-1\r\n" {
            return Ok(Bytes::from_static(b"_\r\n"));
        }
        Ok(reply)
    }
}

/// `(tag, token)` of the `index, token, ...` pairs a function returned.
fn pending_of(items: &[Value], tags: &[&[u8]]) -> Vec<(Vec<u8>, Vec<u8>)> {
    items
        .chunks(2)
        .filter_map(|p| match p {
            [i, tok] => {
                let i = i.as_int()? as usize;
                Some((
                    tags.get(i.checked_sub(1)?)?.to_vec(),
                    tok.as_bytes()?.to_vec(),
                ))
            }
            _ => None,
        })
        .collect()
}

fn pair(v: &Value) -> Result<(i64, i64), Error> {
    match v.as_array() {
        Some([a, b]) => Ok((a.as_int().unwrap_or(0), b.as_int().unwrap_or(0))),
        _ => Err(Error::bad_reply("ERR unexpected reply from a tag function")),
    }
}

fn contains(h: &[u8], n: &[u8]) -> bool {
    h.windows(n.len()).any(|w| w == n)
}

pub fn command(parts: &[&[u8]]) -> Bytes {
    let mut b = BytesMut::new();
    encode::command(&mut b, parts);
    b.freeze()
}

fn error_text(reply: &[u8]) -> String {
    let s = String::from_utf8_lossy(reply.strip_prefix(b"-").unwrap_or(reply));
    s.trim_end().to_string()
}

fn decode(reply: &[u8]) -> Result<Value, Error> {
    match Value::decode_exact(reply) {
        Ok(Value::Error(e)) => Err(Error::reply(String::from_utf8_lossy(&e).into_owned())),
        Ok(v) => Ok(v),
        Err(e) => Err(Error::bad_reply(format!(
            "ERR bad reply from upstream: {e}"
        ))),
    }
}
