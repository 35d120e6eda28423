//! Statistics: per-key heavy hitters (reads, writes, hits, misses, bytes),
//! per-command calls, errors and latency histograms, keyspace hits and misses.
//!
//! # Where the numbers come from
//!
//! Each session owns a [`Recorder`]. When a request takes a reply slot the
//! recorder notes the command, the time its read batch arrived (one
//! `Instant::now()` per socket read, not per request) and, for sampled
//! requests, copies its keys into a small per-session arena. When the reply
//! is drained (in request order, just before it is written to the client) the
//! recorder's [`Sink`] reads the reply's verdict (hit, miss, error), then
//! applies everything to its worker's [`Shard`] under one lock per drain.
//! Shards are per worker thread, so that lock is never contended by the data
//! path; commands and `/metrics` merge the shards when they answer.
//!
//! With `stats.enabled = false` sessions have no recorder: the data path pays
//! one branch per request.
//!
//! Memory is fixed: per-key counters live in a Space-Saving summary of at most
//! `stats.max_keys` keys (split over the shards), per-command counters in a
//! table whose names are fixed (the command table, [`crate::command::table`]).

pub mod classify;
pub mod commands;
pub mod hist;
pub mod info;
pub mod topk;

use crate::command::{table, Info};
use crate::config::StatsConfig;
use classify::Outcome;
use hist::Hist;
use parking_lot::{Mutex, MutexGuard};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
pub use topk::KeyCounters;
use topk::TopK;

/// Keys of one request recorded at most (the rest count in totals only).
const MAX_KEYS_PER_REQUEST: u32 = 1024;
/// A session's key arena is compacted once this much of it is consumed.
const ARENA_COMPACT: usize = 64 * 1024;

/// Process-wide statistics: one shard per worker.
#[derive(Debug)]
pub struct Stats {
    pub enabled: bool,
    pub sample_rate: f64,
    /// Requests whose 64-bit random draw is below this are sampled.
    sample_below: u64,
    pub max_keys: usize,
    /// Latency bucket bounds, microseconds.
    pub bounds: Arc<[u64]>,
    shards: Box<[Mutex<Shard>]>,
    started: Instant,
}

/// One worker's counters.
#[derive(Debug)]
pub struct Shard {
    keys: TopK,
    cmds: Vec<CmdStat>,
    totals: Totals,
    /// Per-element verdicts of the reply being applied (reused).
    scratch: Vec<bool>,
}

/// Calls, failed calls and proxy-side latency of one command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdStat {
    pub calls: u64,
    pub errors: u64,
    pub hist: Hist,
}

/// Keyspace totals, exact whatever the sample rate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub hits: u64,
    pub misses: u64,
    /// Key accesses by reading and writing commands.
    pub reads: u64,
    pub writes: u64,
    /// Per-key tracking: keys tracked now, keys forgotten for hotter ones.
    pub tracked: u64,
    pub evictions: u64,
    pub memory_bytes: u64,
}

/// What `HOTKEYS ... BY` orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Ops,
    Reads,
    Writes,
    Misses,
    Bytes,
}

impl By {
    pub fn parse(s: &[u8]) -> Option<By> {
        Some(match s.to_ascii_lowercase().as_slice() {
            b"ops" => By::Ops,
            b"reads" => By::Reads,
            b"writes" => By::Writes,
            b"misses" => By::Misses,
            b"bytes" => By::Bytes,
            _ => return None,
        })
    }

    fn of(self, c: &KeyCounters) -> u64 {
        match self {
            By::Ops => c.ops,
            By::Reads => c.reads,
            By::Writes => c.writes,
            By::Misses => c.misses,
            By::Bytes => c.bytes_in + c.bytes_out,
        }
    }
}

impl Stats {
    pub fn new(cfg: &StatsConfig, workers: usize) -> Stats {
        let workers = workers.max(1);
        let per_shard = cfg.max_keys.div_ceil(workers).max(1);
        let bounds: Arc<[u64]> = cfg.latency_buckets_us.clone().into();
        let shards = (0..workers)
            .map(|_| {
                Mutex::new(Shard {
                    keys: TopK::new(per_shard),
                    cmds: vec![
                        CmdStat {
                            hist: Hist::new(&bounds),
                            ..Default::default()
                        };
                        table::len()
                    ],
                    totals: Totals::default(),
                    scratch: Vec::new(),
                })
            })
            .collect();
        let rate = cfg.sample_rate.clamp(0.0, 1.0);
        Stats {
            enabled: cfg.enabled,
            sample_rate: rate,
            sample_below: if rate >= 1.0 {
                u64::MAX
            } else {
                (rate * u64::MAX as f64) as u64
            },
            max_keys: cfg.max_keys,
            bounds,
            shards,
            started: Instant::now(),
        }
    }

    /// Time since the proxy started.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// A session's recorder on worker `worker`, or `None` when disabled.
    pub fn recorder(self: &Arc<Self>, worker: usize, seed: u64) -> Option<Box<Recorder>> {
        if !self.enabled {
            return None;
        }
        Some(Box::new(Recorder {
            stats: self.clone(),
            st: RecState {
                shard: worker % self.shards.len(),
                pending: VecDeque::new(),
                keys: Vec::new(),
                key_read: 0,
                drained: 0,
                batch_t: Instant::now(),
                rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
                warm_upto: 0,
            },
        }))
    }

    /// Scales a sampled count back to an estimate of all requests.
    fn scale(&self, v: u64) -> u64 {
        if self.sample_rate >= 1.0 {
            v
        } else {
            (v as f64 / self.sample_rate).round() as u64
        }
    }

    fn scaled(&self, mut c: KeyCounters) -> KeyCounters {
        if self.sample_rate < 1.0 {
            for v in [
                &mut c.reads,
                &mut c.writes,
                &mut c.hits,
                &mut c.misses,
                &mut c.bytes_in,
                &mut c.bytes_out,
                &mut c.ops,
            ] {
                *v = self.scale(*v);
            }
        }
        c
    }

    /// Counters of one key summed over the shards; `None` when untracked.
    pub fn key(&self, key: &[u8]) -> Option<KeyCounters> {
        let mut out: Option<KeyCounters> = None;
        for s in self.shards.iter() {
            if let Some(c) = s.lock().keys.get(key) {
                out.get_or_insert_with(Default::default).merge(c);
            }
        }
        out.map(|c| self.scaled(c))
    }

    /// The `n` hottest keys by `by`, highest first (ties by key).
    pub fn hotkeys(&self, n: usize, by: By) -> Vec<(Vec<u8>, u64)> {
        let mut all: HashMap<Vec<u8>, KeyCounters> = HashMap::new();
        for s in self.shards.iter() {
            let s = s.lock();
            for (k, c) in s.keys.iter() {
                match all.get_mut(k) {
                    Some(e) => e.merge(c),
                    None => {
                        all.insert(k.to_vec(), c.clone());
                    }
                }
            }
        }
        let mut v: Vec<(Vec<u8>, u64)> = all
            .into_iter()
            .map(|(k, c)| {
                let n = by.of(&c);
                (k, self.scale(n))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    /// Per-command counters summed over the shards, for commands called at
    /// least once, by name.
    pub fn commands(&self) -> Vec<(&str, CmdStat)> {
        let mut sum: Vec<CmdStat> = vec![CmdStat::default(); table::len()];
        for s in self.shards.iter() {
            let s = s.lock();
            for (a, b) in sum.iter_mut().zip(&s.cmds) {
                if b.calls > 0 {
                    a.calls += b.calls;
                    a.errors += b.errors;
                    a.hist.merge(&b.hist);
                }
            }
        }
        let mut out: Vec<(&str, CmdStat)> = sum
            .into_iter()
            .enumerate()
            .filter(|(_, c)| c.calls > 0)
            .map(|(i, c)| (table::by_id(i as u16).name, c))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in self.shards.iter() {
            let s = s.lock();
            t.hits += s.totals.hits;
            t.misses += s.totals.misses;
            t.reads += s.totals.reads;
            t.writes += s.totals.writes;
            t.tracked += s.keys.len() as u64;
            t.evictions += s.keys.evictions;
            t.memory_bytes += s.keys.memory() as u64;
        }
        t
    }

    /// `PROXY RESETSTATS`: forget every key and zero every counter here.
    pub fn reset(&self) {
        for s in self.shards.iter() {
            let mut s = s.lock();
            s.keys.clear();
            s.totals = Totals::default();
            for c in s.cmds.iter_mut() {
                c.calls = 0;
                c.errors = 0;
                c.hist = Hist::new(&self.bounds);
            }
        }
    }
}

/// Hot keys for the admin endpoint `/hotkeys`: the top 100 by requests, as
/// `{"keys":[{"key":"...","ops":N,"reads":N,...},...]}`. Keys that are not
/// UTF-8 are shown with U+FFFD for the bad bytes.
pub fn hotkeys_json(stats: &Stats, out: &mut String) {
    use std::fmt::Write;
    out.push_str("{\"keys\":[");
    for (key, _) in stats.hotkeys(100, By::Ops) {
        let Some(c) = stats.key(&key) else {
            continue;
        };
        if !out.ends_with('[') {
            out.push(',');
        }
        out.push_str("{\"key\":\"");
        for ch in String::from_utf8_lossy(&key).chars() {
            match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        let _ = write!(
            out,
            "\",\"ops\":{},\"reads\":{},\"writes\":{},\"hits\":{},\"misses\":{},\"bytes_in\":{},\"bytes_out\":{},\"last_access_ms\":{}}}",
            c.ops, c.reads, c.writes, c.hits, c.misses, c.bytes_in, c.bytes_out, c.last_access_ms
        );
    }
    out.push_str("]}\n");
}

/// A session's side of statistics.
#[derive(Debug)]
pub struct Recorder {
    stats: Arc<Stats>,
    st: RecState,
}

#[derive(Debug)]
struct RecState {
    shard: usize,
    pending: VecDeque<Rec>,
    /// Keys of pending sampled requests: u32 length (LE), then the bytes.
    keys: Vec<u8>,
    key_read: usize,
    /// Sequence number of the next reply slot drained.
    drained: u64,
    batch_t: Instant,
    rng: u64,
    /// Pending requests with a sequence number below this had their
    /// heavy-hitter slot loaded ahead (see [`Sink::warm`]).
    warm_upto: u64,
}

/// A request waiting for its reply.
#[derive(Debug)]
struct Rec {
    seq: u64,
    t: Instant,
    cmd: u16,
    nkeys: u32,
    /// Keys copied to the arena (0 when not sampled).
    stored: u32,
    /// Arena bytes of those keys.
    key_bytes: u32,
    bytes_in: u32,
}

impl Recorder {
    /// A socket read is about to be processed.
    #[inline]
    pub fn begin_batch(&mut self) {
        self.st.batch_t = Instant::now();
    }

    /// A request of command `cmd` took reply slot `seq`; `arg(i)` is its
    /// argument `i` (name at 0).
    #[inline]
    pub fn request<'a>(
        &mut self,
        seq: u64,
        cmd: &'static Info,
        argc: usize,
        arg: impl Fn(usize) -> &'a [u8] + Copy,
        raw_len: usize,
    ) {
        let stats = &*self.stats;
        let st = &mut self.st;
        // Names outside the counted set count as `other`, keys and all.
        let info = if cmd.stat == cmd.id {
            cmd
        } else {
            table::unknown()
        };
        let sampled = if stats.sample_below == u64::MAX {
            true
        } else {
            st.rng ^= st.rng << 13;
            st.rng ^= st.rng >> 7;
            st.rng ^= st.rng << 17;
            st.rng < stats.sample_below
        };
        let (mut nkeys, mut stored) = (0u32, 0u32);
        let before = st.keys.len();
        let keys = &mut st.keys;
        classify::for_each_key(info.keys, argc, arg, |k| {
            nkeys += 1;
            if sampled && stored < MAX_KEYS_PER_REQUEST {
                keys.extend_from_slice(&(k.len() as u32).to_le_bytes());
                keys.extend_from_slice(k);
                stored += 1;
            }
        });
        st.pending.push_back(Rec {
            seq,
            t: st.batch_t,
            cmd: cmd.stat,
            nkeys,
            stored,
            key_bytes: (st.keys.len() - before) as u32,
            bytes_in: raw_len.min(u32::MAX as usize) as u32,
        });
    }

    /// The handle a drain gives each written reply to.
    #[inline]
    pub fn sink(&mut self) -> Sink<'_> {
        Sink {
            stats: &self.stats,
            st: &mut self.st,
            guard: None,
            now: None,
        }
    }
}

/// Applies drained replies to the worker's shard, locking it once per drain.
pub struct Sink<'a> {
    stats: &'a Stats,
    st: &'a mut RecState,
    guard: Option<MutexGuard<'a, Shard>>,
    now: Option<(Instant, u64)>,
}

impl Sink<'_> {
    /// The next slot's reply, as written to the client.
    #[inline]
    pub fn reply(&mut self, reply: &[u8]) {
        let seq = self.st.drained;
        self.st.drained += 1;
        loop {
            match self.st.pending.front() {
                Some(r) if r.seq < seq => {
                    // Cannot happen (every slot is drained once, in order);
                    // dropped rather than misattributed.
                    let r = self.st.pending.pop_front().expect("front");
                    self.st.key_read += r.key_bytes as usize;
                }
                Some(r) if r.seq == seq => break,
                _ => return,
            }
        }
        let Some(rec) = self.st.pending.pop_front() else {
            return;
        };
        let (now, now_ms) = *self.now.get_or_insert_with(|| {
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            (Instant::now(), ms)
        });
        let stats = self.stats;
        let shard = self
            .guard
            .get_or_insert_with(|| stats.shards[self.st.shard].lock());
        warm(self.st, shard, &rec);
        let start = self.st.key_read;
        let keys = &self.st.keys[start..start + rec.key_bytes as usize];
        shard.complete(stats, &rec, keys, reply, now, now_ms);
        self.st.key_read += rec.key_bytes as usize;
        if self.st.key_read == self.st.keys.len() {
            self.st.keys.clear();
            self.st.key_read = 0;
        } else if self.st.key_read >= ARENA_COMPACT {
            self.st.keys.drain(..self.st.key_read);
            self.st.key_read = 0;
        }
    }
}

/// Requests whose heavy-hitter slots are loaded together (see [`warm`]).
const WARM_AHEAD: usize = 16;

/// Loads the heavy-hitter slots of the current request's and the next
/// pending requests' first keys, [`WARM_AHEAD`] at a time. With 100 000
/// tracked keys the table is far larger than the caches, so each update is a
/// cache miss; loads issued back to back overlap, so one wait covers the
/// whole group instead of one wait per reply (a plain load, not a prefetch
/// instruction: the crate forbids `unsafe`). `current` was just taken off the
/// front; its keys start at `key_read`. Results are unaffected: this only
/// reads.
#[inline]
fn warm(st: &mut RecState, shard: &Shard, current: &Rec) {
    if st.warm_upto > current.seq {
        return;
    }
    let mut acc = 0u64;
    let mut off = st.key_read;
    let mut end = off + current.key_bytes as usize;
    if let Some(k) = arena_keys(&st.keys[off..end]).next() {
        acc ^= shard.keys.warm(k);
    }
    let mut upto = current.seq + 1;
    for r in st.pending.iter().take(WARM_AHEAD - 1) {
        off = end;
        end = off + r.key_bytes as usize;
        if let Some(k) = arena_keys(&st.keys[off..end]).next() {
            acc ^= shard.keys.warm(k);
        }
        upto = r.seq + 1;
    }
    st.warm_upto = upto;
    std::hint::black_box(acc);
}

/// Iterates an arena region of length-prefixed keys.
fn arena_keys(mut b: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let k = b.get(4..4 + len)?;
        b = &b[4 + len..];
        Some(k)
    })
}

impl Shard {
    fn complete(
        &mut self,
        stats: &Stats,
        rec: &Rec,
        keys: &[u8],
        reply: &[u8],
        now: Instant,
        now_ms: u64,
    ) {
        let info = table::by_id(rec.cmd);
        let us = now.saturating_duration_since(rec.t).as_micros() as u64;
        let cs = &mut self.cmds[rec.cmd as usize];
        cs.calls += 1;
        cs.hist.record(&stats.bounds, us);
        let error = matches!(reply.first(), Some(b'-' | b'!'));
        if error {
            cs.errors += 1;
        }
        if rec.nkeys == 0 {
            return;
        }
        let n = rec.nkeys as u64;
        if info.read {
            self.totals.reads += n;
        }
        if info.write {
            self.totals.writes += n;
        }
        let outcome = if error {
            Outcome::Unknown
        } else {
            classify::outcome(info.hit, rec.nkeys as usize, reply)
        };
        self.scratch.clear();
        match outcome {
            Outcome::All(true) => self.totals.hits += n,
            Outcome::All(false) => self.totals.misses += n,
            Outcome::Count(found) => {
                self.totals.hits += found.min(n);
                self.totals.misses += n - found.min(n);
            }
            Outcome::PerElement => {
                let scratch = &mut self.scratch;
                if !classify::each_nil(reply, |h| scratch.push(h)) {
                    scratch.clear();
                }
                let hits = self.scratch.iter().filter(|h| **h).count() as u64;
                self.totals.hits += hits;
                self.totals.misses += self.scratch.len() as u64 - hits;
            }
            Outcome::Unknown => {}
        }
        if rec.stored == 0 {
            return;
        }
        let per = rec.stored as u64;
        let bytes_in = rec.bytes_in as u64 / per;
        let bytes_out = reply.len() as u64 / per;
        for (i, key) in arena_keys(keys).enumerate() {
            let Some(c) = self.keys.touch(key) else {
                continue;
            };
            c.reads += info.read as u64;
            c.writes += info.write as u64;
            c.bytes_in += bytes_in;
            c.bytes_out += bytes_out;
            c.last_access_ms = now_ms;
            let hit = match outcome {
                Outcome::All(h) => Some(h),
                Outcome::PerElement => self.scratch.get(i).copied(),
                Outcome::Count(_) | Outcome::Unknown => None,
            };
            match hit {
                Some(true) => c.hits += 1,
                Some(false) => c.misses += 1,
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_keys: usize) -> StatsConfig {
        StatsConfig {
            enabled: true,
            max_keys,
            sample_rate: 1.0,
            latency_buckets_us: vec![100, 1000],
        }
    }

    fn req(r: &mut Recorder, seq: u64, args: &[&[u8]]) {
        r.request(
            seq,
            crate::command::classify(args[0]),
            args.len(),
            |i| args[i],
            10,
        );
    }

    #[test]
    fn hits_and_misses_per_key() {
        let stats = Arc::new(Stats::new(&cfg(100), 1));
        let mut r = stats.recorder(0, 1).unwrap();
        r.begin_batch();
        req(&mut r, 0, &[b"GET", b"a"]);
        req(&mut r, 1, &[b"GET", b"b"]);
        req(&mut r, 2, &[b"MGET", b"a", b"b", b"c"]);
        req(&mut r, 3, &[b"PING"]);
        req(&mut r, 4, &[b"EXISTS", b"a", b"b"]);
        req(&mut r, 5, &[b"SET", b"a", b"1"]);
        {
            let mut s = r.sink();
            s.reply(b"$1\r\nx\r\n");
            s.reply(b"$-1\r\n");
            s.reply(b"*3\r\n$1\r\nx\r\n$-1\r\n$1\r\ny\r\n");
            s.reply(b"+PONG\r\n");
            s.reply(b":1\r\n");
            s.reply(b"+OK\r\n");
        }
        let a = stats.key(b"a").unwrap();
        assert_eq!(
            (a.reads, a.writes, a.hits, a.misses, a.ops),
            (3, 1, 2, 0, 4)
        );
        let b = stats.key(b"b").unwrap();
        assert_eq!((b.hits, b.misses), (0, 2));
        let c = stats.key(b"c").unwrap();
        assert_eq!((c.hits, c.misses), (1, 0));
        let mut json = String::new();
        hotkeys_json(&stats, &mut json);
        assert!(
            json.starts_with("{\"keys\":[{\"key\":\"a\",\"ops\":4,\"reads\":3,"),
            "{json}"
        );
        assert!(json.ends_with("}]}\n"));
        let t = stats.totals();
        // EXISTS a b = 1: one hit and one miss in total, unknown per key.
        assert_eq!((t.hits, t.misses), (4, 3));
        assert_eq!(stats.hotkeys(1, By::Ops), vec![(b"a".to_vec(), 4)]);
        let cmds = stats.commands();
        let get = cmds.iter().find(|c| c.0 == "get").unwrap();
        assert_eq!(get.1.calls, 2);
        assert!(r.st.keys.is_empty());
        stats.reset();
        assert!(stats.key(b"a").is_none());
        assert_eq!(stats.totals(), Totals::default());
    }

    #[test]
    fn unslotted_replies_are_skipped() {
        let stats = Arc::new(Stats::new(&cfg(100), 1));
        let mut r = stats.recorder(0, 1).unwrap();
        req(&mut r, 1, &[b"GET", b"a"]);
        let mut s = r.sink();
        s.reply(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n");
        s.reply(b"$-1\r\n");
        drop(s);
        assert_eq!(stats.key(b"a").unwrap().misses, 1);
    }
}
