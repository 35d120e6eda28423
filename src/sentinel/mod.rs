//! Sentinel mode: which node is the primary of the named master now,
//! published through a `tokio::sync::watch` channel ([`Sentinel::subscribe`]);
//! the server moves every worker's connections when it changes.
//!
//! [`Sentinel::run`] asks every configured sentinel for the master
//! (`SENTINEL MASTER name`) and trusts the answer with the highest
//! `config-epoch` (a sentinel that missed a failover still names the old
//! primary, with an older epoch). A new address is used only after it answers
//! `ROLE` as `master`. The check runs periodically, at once when a sentinel
//! publishes an event about the master ([`watch`]: `+switch-master`,
//! `+sdown`, `+odown`, ...), when a sentinel becomes reachable again, and
//! when a session sees `-READONLY` or a failed upstream connection; the
//! period (`upstream.sentinel_check_interval_ms`, 2 s) only matters when
//! all of those missed a change.
//!
//! A switch publishes the new primary. The server's follower
//! (`server::follow_primary`) replaces each worker's node connections, bumps
//! each worker's generation (sessions compare it once per read batch and
//! drop their cached connection), then kills every connection to the old
//! primary, shared and pinned: requests in flight fail with an error, nothing queued is written,
//! and pinned sessions (transactions, blocking commands, pub/sub) get an
//! error reply and are closed, as clients of a failed-over Redis would be.
//! While no primary is known, requests fail at once with an error naming the
//! master, and `/ready` is false.

mod watch;

use crate::config::Config;
use crate::error::Error;
use crate::protocol::Value;
use crate::upstream::{oneshot, NodeConns};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Re-check this often while no primary is known or a new one is not
/// confirmed yet (a failover in progress).
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// At most one check per this interval, however many events ask for one.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(50);

/// Label used in error replies while no primary is known.
const NO_PRIMARY_LABEL: &str = "sentinel";

/// What one sentinel last told us.
#[derive(Debug, Clone, Default)]
pub struct SentinelStatus {
    pub addr: String,
    /// Its last `SENTINEL MASTER` query was answered.
    pub reachable: bool,
    /// The event subscription is up.
    pub subscribed: bool,
    /// The primary it reports, and its `config-epoch`.
    pub reported: Option<(String, i64)>,
    pub last_error: Option<String>,
}

#[derive(Debug)]
pub struct Sentinel {
    config: Arc<Config>,
    master: String,
    /// The primary in use, published to the server's follower.
    primary: tokio::sync::watch::Sender<Option<Arc<str>>>,
    generation: AtomicU64,
    refresh: Notify,
    sentinels: Vec<Mutex<SentinelStatus>>,
    switches: AtomicU64,
    checks: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Sentinel {
    pub fn new(config: Arc<Config>) -> Arc<Sentinel> {
        let master = config.upstream.master_name.clone().unwrap_or_default();
        let sentinels = config
            .upstream
            .nodes
            .iter()
            .map(|a| {
                Mutex::new(SentinelStatus {
                    addr: a.clone(),
                    ..SentinelStatus::default()
                })
            })
            .collect();
        Arc::new(Sentinel {
            config,
            master,
            primary: tokio::sync::watch::Sender::new(None),
            generation: AtomicU64::new(0),
            refresh: Notify::new(),
            sentinels,
            switches: AtomicU64::new(0),
            checks: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

    pub fn master_name(&self) -> &str {
        &self.master
    }

    /// The primary in use, if one is known.
    pub fn primary(&self) -> Option<Arc<str>> {
        self.primary.borrow().clone()
    }

    /// Every change of the primary (a new address, or none while it is
    /// demoted), as it is decided.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<Arc<str>>> {
        self.primary.subscribe()
    }

    /// How many times the primary changed (`PROXY INFO`).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn switches(&self) -> u64 {
        self.switches.load(Ordering::Relaxed)
    }

    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    pub fn sentinels(&self) -> Vec<SentinelStatus> {
        self.sentinels.iter().map(|s| s.lock().clone()).collect()
    }

    /// Ask the sentinels again soon (`-READONLY` seen, a connection failed).
    pub fn request_refresh(&self) {
        self.refresh.notify_one();
    }

    /// Connections for the current primary, or ones that fail every request
    /// with a clear error when none is known.
    pub fn node_conns(&self) -> NodeConns {
        self.node_conns_for(self.primary().as_deref())
    }

    /// Connections for `primary`, or failing ones for none (see
    /// [`Sentinel::node_conns`]).
    pub fn node_conns_for(&self, primary: Option<&str>) -> NodeConns {
        match primary {
            Some(addr) => NodeConns::new(self.config.clone(), addr),
            None => NodeConns::unavailable(
                self.config.clone(),
                NO_PRIMARY_LABEL,
                &format!("no primary known for master '{}'", self.master),
            ),
        }
    }

    /// Discovery loop and one event subscription per sentinel; runs for the
    /// life of the process.
    pub async fn run(self: Arc<Self>) {
        for i in 0..self.sentinels.len() {
            tokio::spawn(watch::watch(self.clone(), i));
        }
        loop {
            let settled = self.check().await;
            self.checks.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(MIN_REFRESH_GAP).await;
            let wait = if settled {
                self.config.upstream.sentinel_check_interval
            } else {
                RETRY_EVERY.min(self.config.upstream.sentinel_check_interval)
            };
            let _ = tokio::time::timeout(wait, self.refresh.notified()).await;
        }
    }

    /// One round: ask, verify, switch if needed. True when the primary in
    /// use is the one the sentinels report and it is confirmed.
    async fn check(&self) -> bool {
        let reported = self.ask_sentinels().await;
        let current = self.primary();
        let Some(candidate) = reported else {
            // No sentinel answered: keep what we have (the data path may
            // still work) and keep asking.
            let msg = "no sentinel reachable".to_string();
            self.note_error(Some(msg));
            return false;
        };
        match role(&self.config, &candidate).await {
            Ok(true) => {
                self.note_error(None);
                if current.as_deref() != Some(candidate.as_str()) {
                    self.switch(Some(candidate.as_str().into()));
                }
                true
            }
            Ok(false) if current.as_deref() == Some(candidate.as_str()) => {
                // The sentinels still name our primary, but it was demoted:
                // stop writing to it until they name the new one.
                self.note_error(Some(format!("{candidate} is no longer a primary")));
                self.switch(None);
                false
            }
            Ok(false) => {
                self.note_error(Some(format!(
                    "{candidate} (reported by the sentinels) is not a primary yet"
                )));
                false
            }
            Err(e) => {
                // Unreachable: a failover is probably on its way; a request to
                // it fails fast meanwhile (its connections are down).
                self.note_error(Some(format!("{candidate}: {e}")));
                false
            }
        }
    }

    fn note_error(&self, e: Option<String>) {
        let mut g = self.last_error.lock();
        if *g != e {
            if let Some(e) = &e {
                tracing::warn!(master = %self.master, error = %e, "sentinel check");
            }
            *g = e;
        }
    }

    /// Query every sentinel at once; the primary to believe (see [`choose`]).
    async fn ask_sentinels(&self) -> Option<String> {
        // Asked in parallel: a sentinel that hangs must not delay the others.
        let tasks: Vec<_> = self
            .sentinels
            .iter()
            .map(|s| {
                let addr = s.lock().addr.clone();
                let config = self.config.clone();
                let name = self.master.clone();
                tokio::spawn(async move {
                    let u = &config.upstream;
                    let cmd: &[&[u8]] = &[b"SENTINEL", b"MASTER", name.as_bytes()];
                    oneshot::request_as(
                        &config,
                        &addr,
                        u.sentinel_username.as_deref(),
                        u.sentinel_password.as_deref(),
                        &[cmd],
                    )
                    .await
                    .and_then(|mut replies| parse_master(&replies.pop().unwrap_or_default()))
                })
            })
            .collect();
        let mut answers = Vec::with_capacity(tasks.len());
        for t in tasks {
            answers.push(t.await.unwrap_or_else(|e| Err(Error::io(e))));
        }
        let mut reports = Vec::new();
        for (s, answer) in self.sentinels.iter().zip(answers) {
            let mut s = s.lock();
            match answer {
                Ok(r) => {
                    s.reachable = true;
                    s.last_error = None;
                    s.reported = Some((r.addr.clone(), r.epoch));
                    reports.push(r);
                }
                Err(e) => {
                    s.reachable = false;
                    s.last_error = Some(e.to_string());
                }
            }
        }
        choose(&reports)
    }

    /// Publish `primary` (or nothing) as the one in use; the server's
    /// follower moves the connections.
    fn switch(&self, primary: Option<Arc<str>>) {
        let old = self.primary.send_replace(primary.clone());
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.switches.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            master = %self.master,
            from = old.as_deref().unwrap_or("-"),
            to = primary.as_deref().unwrap_or("-"),
            "sentinel: primary changed"
        );
    }

    fn set_subscribed(&self, i: usize, up: bool, err: Option<String>) {
        let mut s = self.sentinels[i].lock();
        s.subscribed = up;
        if err.is_some() {
            s.last_error = err;
        }
    }
}

/// One sentinel's answer about the master.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Report {
    addr: String,
    epoch: i64,
    /// The sentinel is running a failover of this master: it names the old
    /// primary until the failover ends, although the others may already
    /// have the new one with the same epoch.
    failing_over: bool,
}

/// The primary to believe: reports of sentinels in the middle of a failover
/// count only when nobody else answered; then the highest `config-epoch`
/// wins, then the address most sentinels agree on.
fn choose(reports: &[Report]) -> Option<String> {
    let settled: Vec<&Report> = reports.iter().filter(|r| !r.failing_over).collect();
    let pool: Vec<&Report> = if settled.is_empty() {
        reports.iter().collect()
    } else {
        settled
    };
    let votes = |addr: &str| pool.iter().filter(|r| r.addr == addr).count();
    pool.iter()
        .max_by_key(|r| (r.epoch, votes(&r.addr)))
        .map(|r| r.addr.clone())
}

/// Address, `config-epoch` and failover state from a `SENTINEL MASTER` reply.
fn parse_master(reply: &[u8]) -> Result<Report, Error> {
    let v = Value::decode_exact(reply).map_err(|e| Error::bad_reply(e.to_string()))?;
    if let Value::Error(e) = &v {
        return Err(Error::reply(String::from_utf8_lossy(e).into_owned()));
    }
    let text = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_bytes())
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let (Some(ip), Some(port)) = (text("ip"), text("port")) else {
        return Err(Error::bad_reply(
            "SENTINEL MASTER reply without ip and port",
        ));
    };
    let epoch = v.get("config-epoch").and_then(|x| x.as_int()).unwrap_or(0);
    let addr = if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    };
    let failing_over = text("flags").is_some_and(|f| f.contains("failover_in_progress"));
    Ok(Report {
        addr,
        epoch,
        failing_over,
    })
}

/// Whether `addr` answers `ROLE` as a primary.
async fn role(config: &Config, addr: &str) -> Result<bool, Error> {
    let cmd: &[&[u8]] = &[b"ROLE"];
    let mut r = oneshot::request(config, addr, &[cmd]).await?;
    let v = Value::decode_exact(&r.pop().unwrap_or_default())
        .map_err(|e| Error::bad_reply(e.to_string()))?;
    match &v {
        Value::Error(e) => Err(Error::reply(String::from_utf8_lossy(e).into_owned())),
        _ => Ok(v
            .as_array()
            .and_then(|a| a.first())
            .and_then(|r| r.as_bytes())
            == Some(b"master".as_slice())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(addr: &str, epoch: i64, failing_over: bool) -> Report {
        Report {
            addr: addr.to_string(),
            epoch,
            failing_over,
        }
    }

    #[test]
    fn choice_skips_failing_over_sentinels_then_takes_epoch_then_votes() {
        // The failover leader still names the old primary with the new epoch.
        let r = [
            report("old:1", 2, true),
            report("new:1", 2, false),
            report("new:1", 2, false),
        ];
        assert_eq!(choose(&r).as_deref(), Some("new:1"));
        // A sentinel that missed the failover has an older epoch.
        let r = [report("old:1", 1, false), report("new:1", 2, false)];
        assert_eq!(choose(&r).as_deref(), Some("new:1"));
        let r = [
            report("a:1", 3, false),
            report("b:1", 3, false),
            report("b:1", 3, false),
        ];
        assert_eq!(choose(&r).as_deref(), Some("b:1"));
        assert_eq!(choose(&[report("a:1", 3, true)]).as_deref(), Some("a:1"));
        assert_eq!(choose(&[]), None);
    }

    #[test]
    fn master_reply_gives_address_and_epoch() {
        let reply = b"*6\r\n$4\r\nname\r\n$8\r\nmymaster\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$4\r\nport\r\n$4\r\n6380\r\n";
        assert_eq!(parse_master(reply), Ok(report("127.0.0.1:6380", 0, false)));
        let reply = b"*8\r\n$2\r\nip\r\n$3\r\n::1\r\n$4\r\nport\r\n$2\r\n10\r\n$12\r\nconfig-epoch\r\n$1\r\n7\r\n$5\r\nflags\r\n$27\r\nmaster,failover_in_progress\r\n";
        assert_eq!(parse_master(reply), Ok(report("[::1]:10", 7, true)));
        assert!(parse_master(b"-ERR No such master with that name\r\n").is_err());
        assert!(parse_master(b"*0\r\n").is_err());
    }
}
