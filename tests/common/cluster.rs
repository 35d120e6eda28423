//! A real Redis Cluster for integration tests: `redis-server` processes in
//! cluster mode on free loopback ports, joined by `redis-cli --cluster
//! create`, killed on `Drop`.
//!
//! The harness reads the topology from `CLUSTER NODES` text on its own, never
//! through respite's parsers, so that tests can check those parsers against it.
//! [`RedisCluster::start`] returns only once the cluster is fully settled:
//! every node says `cluster_state:ok`, every node's view of slots and
//! replicas is the same, every replica has synced, and every node reports
//! every node `online` in `CLUSTER SHARDS`. Waits are bounded and panic with
//! what was last seen.

use super::{die_with_parent, free_port, kill_and_reap, read_log, run_with_timeout, wait_ready};
use super::{escape, RawConn};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long the cluster may take to settle after creation or a reshard.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One `redis-server` of the cluster.
struct Node {
    port: u16,
    bus_port: u16,
    id: String,
    child: Option<Child>,
}

/// A Redis Cluster of `primaries` shards with `replicas` replicas each.
pub struct RedisCluster {
    dir: TempDir,
    nodes: Vec<Node>,
    primaries: usize,
    replicas: usize,
    /// The agreed view when the cluster last settled.
    settled_view: View,
}

/// One node's view of the cluster, from `CLUSTER NODES`, by port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// `(start, end, primary port)`, sorted.
    pub slots: Vec<(u16, u16, u16)>,
    /// Replica port -> primary port.
    pub replicas: BTreeMap<u16, u16>,
    /// Node id -> port.
    pub ids: BTreeMap<String, u16>,
    /// Anything that makes the view unsettled: failure flags, handshakes,
    /// disconnected links, slots in migration.
    pub problems: Vec<String>,
}

impl View {
    /// Parses `CLUSTER NODES` output.
    pub fn parse(text: &str) -> View {
        let mut view = View::default();
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .filter(|f| f.len() >= 8)
            .collect();
        let port_of = |addr: &str| -> u16 {
            let hostport = addr.split('@').next().unwrap_or("");
            hostport
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0)
        };
        for f in &lines {
            view.ids.insert(f[0].to_string(), port_of(f[1]));
        }
        for f in &lines {
            let port = port_of(f[1]);
            let flags = f[2];
            if flags
                .split(',')
                .any(|x| matches!(x, "fail" | "fail?" | "handshake" | "noaddr"))
            {
                view.problems.push(format!("{port} flags {flags}"));
            }
            if f[7] != "connected" {
                view.problems.push(format!("{port} link {}", f[7]));
            }
            if flags.contains("slave") {
                match view.ids.get(f[3]) {
                    Some(&p) => {
                        view.replicas.insert(port, p);
                    }
                    None => view
                        .problems
                        .push(format!("{port} replicates unknown {}", f[3])),
                }
            }
            for s in &f[8..] {
                if s.starts_with('[') {
                    view.problems.push(format!("{port} slot in migration {s}"));
                    continue;
                }
                let (a, b) = s.split_once('-').unwrap_or((s, s));
                match (a.parse(), b.parse()) {
                    (Ok(a), Ok(b)) => view.slots.push((a, b, port)),
                    _ => view.problems.push(format!("{port} bad slot entry {s}")),
                }
            }
        }
        view.slots.sort();
        view
    }

    /// Slots covered by some primary.
    pub fn covered(&self) -> usize {
        self.slots
            .iter()
            .map(|(a, b, _)| (*b - *a) as usize + 1)
            .sum()
    }

    /// Port of the primary serving `slot`.
    pub fn owner(&self, slot: u16) -> Option<u16> {
        self.slots
            .iter()
            .find(|(a, b, _)| (*a..=*b).contains(&slot))
            .map(|(_, _, p)| *p)
    }

    /// Ports of the primaries that serve slots, in slot order, each once.
    pub fn primaries(&self) -> Vec<u16> {
        let mut out = Vec::new();
        for (_, _, p) in &self.slots {
            if !out.contains(p) {
                out.push(*p);
            }
        }
        out
    }

    /// How many slots the primary at `port` serves.
    pub fn slots_of(&self, port: u16) -> usize {
        self.slots
            .iter()
            .filter(|(_, _, p)| *p == port)
            .map(|(a, b, _)| (*b - *a) as usize + 1)
            .sum()
    }
}

impl RedisCluster {
    /// Starts and joins `primaries * (1 + replicas)` nodes and waits until
    /// the cluster has settled (see the module doc).
    pub fn start(primaries: usize, replicas: usize) -> RedisCluster {
        assert!(
            primaries >= 3,
            "redis-cli --cluster create needs 3 primaries"
        );
        let dir = tempfile::Builder::new()
            .prefix("respite-cluster-")
            .tempdir()
            .expect("create tempdir");
        let mut cluster = RedisCluster {
            dir,
            nodes: Vec::new(),
            primaries,
            replicas,
            settled_view: View::default(),
        };
        for _ in 0..primaries * (1 + replicas) {
            let node = cluster.spawn_node();
            cluster.nodes.push(node);
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args: Vec<&str> = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        let replicas_arg = replicas.to_string();
        args.extend(["--cluster-replicas", &replicas_arg, "--cluster-yes"]);
        let out = run_with_timeout("redis-cli", &args, b"", Duration::from_secs(60));
        if !out.status.success() {
            panic!(
                "redis-cli --cluster create failed ({})\n{}\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                cluster.logs()
            );
        }
        for i in 0..cluster.nodes.len() {
            let port = cluster.nodes[i].port;
            cluster.nodes[i].id = cluster.myid(port);
        }
        cluster.wait_settled();
        cluster
    }

    /// Spawns one cluster-enabled server on free ports (retrying when a port
    /// was taken between probing and binding) and waits for its PING.
    fn spawn_node(&self) -> Node {
        let mut last = String::new();
        for _ in 0..5 {
            let (port, bus_port) = (free_port(), free_port());
            let log_path = self.dir.path().join(format!("redis-{port}.log"));
            let log = File::create(&log_path).expect("create node log");
            let log2 = log.try_clone().expect("clone log handle");
            let mut cmd = Command::new("redis-server");
            die_with_parent(&mut cmd);
            cmd.args(["--port", &port.to_string()])
                // The bus port is chosen too (Redis 7), rather than left at
                // port + 10000, which may be outside the range free_port owns.
                .args(["--cluster-port", &bus_port.to_string()])
                .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
                .args(["--cluster-enabled", "yes"])
                .arg("--cluster-config-file")
                .arg(self.dir.path().join(format!("nodes-{port}.conf")))
                .args(["--cluster-node-timeout", "2000"])
                // Replicas count as "loading" in CLUSTER SHARDS until their
                // offset moves; the primary's pings move it, every 10 s by default.
                .args(["--repl-ping-replica-period", "1"])
                // A replica's first sync otherwise waits 5 s for more replicas
                // to share the diskless transfer.
                .args(["--repl-diskless-sync-delay", "0"])
                .args(["--appendonly", "no", "--save", "", "--daemonize", "no"])
                .arg("--dir")
                .arg(self.dir.path())
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2);
            let mut child = cmd.spawn().expect("spawn redis-server");
            match wait_ready(&mut child, port, "redis-server (cluster node)") {
                Ok(_) => {
                    return Node {
                        port,
                        bus_port,
                        id: String::new(),
                        child: Some(child),
                    }
                }
                Err(e) => {
                    kill_and_reap(&mut child);
                    let log = read_log(&log_path);
                    if !log.contains("Address already in use") {
                        panic!("{e}\n--- redis-server log ---\n{log}");
                    }
                    last = e;
                }
            }
        }
        panic!("could not start a cluster node on free ports: {last}");
    }

    /// Every node's port, running or not.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Ports of the nodes still running.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// Ports of the primaries serving slots, in slot order.
    pub fn primary_ports(&self) -> Vec<u16> {
        self.view().primaries()
    }

    /// Port of the primary serving `slot`.
    #[track_caller]
    pub fn node_for_slot(&self, slot: u16) -> u16 {
        let view = self.view();
        view.owner(slot)
            .unwrap_or_else(|| panic!("no node serves slot {slot}: {view:?}"))
    }

    /// The node id of the node on `port`.
    pub fn node_id(&self, port: u16) -> &str {
        &self.node(port).id
    }

    /// `127.0.0.1:PORT` of a running node, to seed topology discovery.
    pub fn seed_addr(&self) -> String {
        format!("127.0.0.1:{}", self.live_ports()[0])
    }

    /// A raw connection to the node on `port`.
    pub fn conn(&self, port: u16) -> RawConn {
        RawConn::connect(port)
    }

    /// The view of the first running node.
    pub fn view(&self) -> View {
        let port = self.live_ports()[0];
        View::parse(&self.cluster_nodes(port).expect("CLUSTER NODES"))
    }

    /// Kills the node on `port` with SIGKILL (no failover is waited for).
    pub fn kill(&mut self, port: u16) {
        if let Some(mut c) = self.node_mut(port).child.take() {
            kill_and_reap(&mut c);
        }
    }

    /// After [`RedisCluster::kill`] of a primary: waits until every running
    /// node agrees that another node (its promoted replica) serves all of its
    /// slots, and returns that node's port.
    pub fn wait_failover(&self, dead: u16) -> u16 {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut why = String::new();
        while Instant::now() < deadline {
            match self.failed_over(dead) {
                Ok(port) => return port,
                Err(e) => why = e,
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "no failover of {dead} within {SETTLE_TIMEOUT:?}: {why}\n{}",
            self.logs()
        );
    }

    fn failed_over(&self, dead: u16) -> Result<u16, String> {
        let before = self.settled_view.slots.clone();
        let mut agreed: Option<View> = None;
        for &port in &self.live_ports() {
            let info = self.cmd_text(port, &["CLUSTER", "INFO"])?;
            if !info.contains("cluster_state:ok") {
                return Err(format!("{port} is not cluster_state:ok"));
            }
            let view = View::parse(&self.cluster_nodes(port)?);
            if view.primaries().contains(&dead) {
                return Err(format!("{port} still routes slots to {dead}"));
            }
            match &agreed {
                Some(a) if a.slots != view.slots => return Err(format!("{port} disagrees")),
                Some(_) => {}
                None => agreed = Some(view),
            }
        }
        let view = agreed.ok_or("no node is running")?;
        let heirs: Vec<u16> = before
            .iter()
            .filter(|(_, _, p)| *p == dead)
            .filter_map(|(a, _, _)| view.owner(*a))
            .collect();
        match heirs.first() {
            Some(&h) if heirs.iter().all(|&x| x == h) => Ok(h),
            _ => Err(format!("slots of {dead} went to {heirs:?}")),
        }
    }

    /// Moves `slots` slots from the primary on `from` to the primary on `to`
    /// with `redis-cli --cluster reshard`, then waits until the cluster has
    /// settled again.
    pub fn reshard(&mut self, from: u16, to: u16, slots: usize) {
        let seed = format!("127.0.0.1:{from}");
        let (from_id, to_id) = (self.node_id(from).to_string(), self.node_id(to).to_string());
        let n = slots.to_string();
        let args = [
            "--cluster",
            "reshard",
            &seed,
            "--cluster-from",
            &from_id,
            "--cluster-to",
            &to_id,
            "--cluster-slots",
            &n,
            "--cluster-yes",
        ];
        let out = run_with_timeout("redis-cli", &args, b"", Duration::from_secs(120));
        if !out.status.success() {
            panic!(
                "redis-cli --cluster reshard failed ({})\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.wait_settled();
    }

    /// Waits until every running node is `cluster_state:ok`, all views agree,
    /// cover every slot with the expected shards, and (while every node runs)
    /// every replica is synced and reported `online` everywhere.
    pub fn wait_settled(&mut self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut why = String::new();
        while Instant::now() < deadline {
            match self.settled() {
                Ok(view) => {
                    self.settled_view = view;
                    return;
                }
                Err(e) => why = e,
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "cluster not settled within {SETTLE_TIMEOUT:?}: {why}\n{}",
            self.logs()
        );
    }

    fn settled(&self) -> Result<View, String> {
        let live = self.live_ports();
        let all_up = live.len() == self.nodes.len();
        let mut first: Option<View> = None;
        for &port in &live {
            let info = self.cmd_text(port, &["CLUSTER", "INFO"])?;
            if !info.contains("cluster_state:ok") {
                return Err(format!("{port} is not cluster_state:ok"));
            }
            let view = View::parse(&self.cluster_nodes(port)?);
            if !view.problems.is_empty() && all_up {
                return Err(format!("{port} sees {:?}", view.problems));
            }
            if view.covered() != 16384 {
                return Err(format!("{port} sees {} slots covered", view.covered()));
            }
            match &first {
                None => first = Some(view),
                Some(f) if f.slots != view.slots || f.replicas != view.replicas => {
                    return Err(format!("{port} disagrees: {view:?} vs {f:?}"));
                }
                Some(_) => {}
            }
        }
        let view = first.ok_or("no node is running")?;
        if !all_up {
            return Ok(view);
        }
        if view.primaries().len() != self.primaries {
            return Err(format!("{} primaries serve slots", view.primaries().len()));
        }
        if view.replicas.len() != self.primaries * self.replicas {
            return Err(format!("{} replicas", view.replicas.len()));
        }
        for &replica in view.replicas.keys() {
            let info = self.cmd_text(replica, &["INFO", "replication"])?;
            if !info.contains("master_link_status:up") {
                return Err(format!("replica {replica} not synced"));
            }
        }
        for &port in &live {
            let shards = self.cmd_raw(port, &["CLUSTER", "SHARDS"])?;
            let online = count(&shards, b"$6\r\nhealth\r\n$6\r\nonline\r\n");
            if online != self.nodes.len() {
                return Err(format!(
                    "{port} reports {online} of {} nodes online",
                    self.nodes.len()
                ));
            }
        }
        Ok(view)
    }

    fn myid(&self, port: u16) -> String {
        self.cmd_text(port, &["CLUSTER", "MYID"])
            .unwrap_or_else(|e| panic!("CLUSTER MYID on {port}: {e}"))
    }

    fn cluster_nodes(&self, port: u16) -> Result<String, String> {
        self.cmd_text(port, &["CLUSTER", "NODES"])
    }

    /// One command on a fresh connection; the raw reply.
    fn cmd_raw(&self, port: u16, args: &[&str]) -> Result<Vec<u8>, String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("{port}: {e}"))?;
        let mut c = RawConn::from_stream(stream, Duration::from_secs(5));
        c.try_send(&super::encode_str(args))
            .and_then(|_| c.try_read_reply())
            .map_err(|e: io::Error| format!("{port} {args:?}: {e}"))
    }

    /// One command whose reply is a bulk or simple string, as text.
    fn cmd_text(&self, port: u16, args: &[&str]) -> Result<String, String> {
        let raw = self.cmd_raw(port, args)?;
        let text = match raw.first() {
            Some(b'$') => raw
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| &raw[i + 1..raw.len() - 2]),
            Some(b'+') => Some(&raw[1..raw.len() - 2]),
            _ => None,
        };
        text.map(|t| String::from_utf8_lossy(t).into_owned())
            .ok_or_else(|| format!("{port} {args:?}: {}", escape(&raw)))
    }

    fn node(&self, port: u16) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    fn node_mut(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// The tail of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let log = read_log(&self.dir.path().join(format!("redis-{}.log", n.port)));
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            out += &format!(
                "--- node {} (bus {}) ---\n{}\n",
                n.port,
                n.bus_port,
                tail.join("\n")
            );
        }
        out
    }
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                kill_and_reap(&mut c);
            }
        }
    }
}
