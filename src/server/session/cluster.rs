//! Cluster routing for a session: a request goes to the primary of its keys'
//! slot; the multi-key commands Redis Cluster clients split (MGET, MSET, DEL,
//! UNLINK, EXISTS, TOUCH) are split by slot and merged back; other requests
//! whose keys span slots get Redis Cluster's own CROSSSLOT error; keyless
//! commands follow an explicit per-command policy (`keyless`).

use super::{Flow, Held, Req, Session, TxWait};
use crate::cluster::topology::Topology;
use crate::cluster::{key_slot, parse_redirect, RedirectKind, SlotMap};
use crate::command::keys::KeyTable;
use crate::command::table::{self, Cluster, Split};
use crate::command::Kind;
use crate::error::{self, CROSSSLOT, NO_SLOT_MAP, SLOT_NOT_SERVED};
use crate::protocol::encode;
use crate::replies::{After, Alloc, Redirected, DISCARD, WHOLE};
use crate::router::merge::{Merge, SCAN_NODE_BITS};
use crate::upstream::conn::Conn;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

/// Nodes whose connections a session finds by pointer (see `node_conn`).
const RECENT_CONNS: usize = 16;

const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
const DISCARD_CMD: &[u8] = b"*1\r\n$7\r\nDISCARD\r\n";
/// Bytes of keyless commands a transaction may queue before its first key
/// and still move to that key's node; past this it stays where it is.
const HELD_MAX_BYTES: usize = 1 << 20;

impl Session {
    pub(super) fn forward_cluster(&mut self, req: &Req, alloc: &mut Alloc) -> Flow {
        let Some(topo) = self.cluster.clone() else {
            return Flow::Next;
        };
        // Most requests have a few arguments: those stay on the stack.
        let mut stack: [&[u8]; 8] = [&[]; 8];
        let heap: Vec<&[u8]>;
        let args: &[&[u8]] = if req.argc() <= stack.len() {
            for (i, a) in stack.iter_mut().enumerate().take(req.argc()) {
                *a = req.arg(i);
            }
            &stack[..req.argc()]
        } else {
            heap = (0..req.argc()).map(|i| req.arg(i)).collect();
            &heap
        };
        let (map, table) = self.routing(&topo);
        let cmd = table.resolve(args);
        let mut keys = std::mem::take(&mut self.key_scratch);
        let found = cmd
            .as_ref()
            .is_ok_and(|c| c.keys_into(args, &mut keys).is_ok() && !keys.is_empty());
        let flow = if found {
            let slot = key_slot(args[keys[0]]);
            if keys[1..].iter().all(|&i| key_slot(args[i]) == slot) {
                let replica_ok = self.ctx.config.upstream.read_from
                    == crate::config::ReadFrom::ReplicaPreferred
                    && cmd
                        .is_ok_and(|c| c.flags.contains(crate::command::keys::CmdFlags::READONLY));
                self.send_to_slot(req.raw, slot, &map, replica_ok, alloc)
            } else {
                match req.cmd.cluster {
                    Cluster::Split(how) => self.split(how, args, &keys, &map, alloc),
                    _ => self.reply_error(alloc, CROSSSLOT),
                }
            }
        } else {
            // No keys (or a malformed request, which Redis will reject itself).
            // Shard channels (SPUBLISH, ...) are not keys but live in a slot.
            let channel = cmd
                .ok()
                .and_then(|c| c.routing_args_of(args).ok())
                .and_then(|r| r.first().copied());
            match channel {
                Some(i) => {
                    let slot = key_slot(args[i]);
                    self.send_to_slot(req.raw, slot, &map, false, alloc)
                }
                None => self.keyless(req, args, &map, alloc),
            }
        };
        self.key_scratch = keys;
        flow
    }

    /// The primary serving `slot` (or, for a read with `read_from =
    /// "replica_preferred"`, one of its replicas that is not down, chosen per
    /// session); the request is kept for a redirect.
    fn send_to_slot(
        &mut self,
        raw: &[u8],
        slot: u16,
        map: &Arc<SlotMap>,
        replica_ok: bool,
        alloc: &mut Alloc,
    ) -> Flow {
        let Some(shard) = map.node_for(slot) else {
            return self.reply_error(alloc, SLOT_NOT_SERVED);
        };
        let mut conn = None;
        if replica_ok && !shard.replicas.is_empty() {
            let n = shard.replicas.len();
            let first = (self.st.id % n as u64) as usize;
            for i in 0..n {
                let c = self.node_conn(map, &shard.replicas[(first + i) % n]);
                if c.state() != crate::upstream::conn::ConnState::Down {
                    conn = Some(c);
                    break;
                }
            }
        }
        let conn = match conn {
            Some(c) => c,
            None => self.node_conn(map, &shard.primary),
        };
        let request = self.arena_copy(raw);
        let seq = alloc.pending_retry(request);
        self.push(&conn, raw, Some((seq, WHOLE)), alloc);
        Flow::Next
    }

    /// Split a multi-key command into one command per slot, merged in argument order.
    fn split(
        &mut self,
        how: Split,
        args: &[&[u8]],
        keys: &[usize],
        map: &SlotMap,
        alloc: &mut Alloc,
    ) -> Flow {
        // MSET's keys are followed by their values.
        let per_key = if how == Split::PairsAllOk { 2 } else { 1 };
        let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
        for (n, &k) in keys.iter().enumerate() {
            let slot = key_slot(args[k]);
            match groups.iter_mut().find(|g| g.0 == slot) {
                Some(g) => g.1.push(n),
                None => groups.push((slot, vec![n])),
            }
        }
        let mut requests = Vec::with_capacity(groups.len());
        for (_, members) in &groups {
            let mut parts: Vec<&[u8]> = vec![args[0]];
            for &n in members {
                for j in 0..per_key {
                    parts.push(args[keys[n] + j]);
                }
            }
            let mut b = BytesMut::new();
            encode::command(&mut b, &parts);
            requests.push(b.freeze());
        }
        let merge = match how {
            Split::Scatter => Merge::Scatter {
                positions: groups
                    .iter()
                    .map(|g| g.1.iter().map(|&n| n as u32).collect())
                    .collect(),
                total: keys.len() as u32,
            },
            Split::PairsAllOk => Merge::AllOk,
            Split::SumInt => Merge::SumInt,
        };
        let seq = alloc.pending_parts(requests.clone(), merge);
        for (i, ((slot, _), request)) in groups.iter().zip(&requests).enumerate() {
            match map.node_for(*slot) {
                Some(shard) => {
                    let conn = self.cluster_conn(&shard.primary);
                    self.push(&conn, request, Some((seq, i as u32)), alloc);
                }
                None => alloc.fill(seq, i as u32, error::reply(SLOT_NOT_SERVED)),
            }
        }
        Flow::Next
    }

    /// Keyless commands, by the command's cluster policy (the table says
    /// why each command has its policy).
    fn keyless(&mut self, req: &Req, args: &[&[u8]], map: &SlotMap, alloc: &mut Alloc) -> Flow {
        let primaries = map.serving_primaries();
        if primaries.is_empty() {
            return self.reply_error(alloc, NO_SLOT_MAP);
        }
        let sub = |subs: &[&str]| {
            args.get(1)
                .is_some_and(|a| subs.iter().any(|s| a.eq_ignore_ascii_case(s.as_bytes())))
        };
        match table::cluster_policy(req.cmd, args) {
            Cluster::AllPrimaries(merge) => {
                self.all_primaries(req.raw, &primaries, merge_of(merge), alloc)
            }
            Cluster::AllNodes(merge) => {
                self.all_primaries(req.raw, &map.all_nodes(), merge_of(merge), alloc)
            }
            Cluster::AllPrimariesOutOfBand(merge) => {
                self.out_of_band_all(req.raw, &primaries, merge_of(merge), alloc)
            }
            Cluster::Fixed => {
                let addr = fixed_node(map, &primaries);
                let conn = self.cluster_conn(&addr);
                let seq = alloc.pending();
                self.push(&conn, req.raw, Some((seq, WHOLE)), alloc);
                Flow::Next
            }
            Cluster::Info => self.all_primaries(req.raw, &primaries, Merge::Info, alloc),
            Cluster::ClusterCmd if args.len() == 2 && sub(&["info"]) => {
                let text = cluster_info(map);
                let mut b = BytesMut::new();
                if self.st.proto == crate::protocol::Proto::Resp3 {
                    let body = format!("txt:{text}");
                    b.extend_from_slice(format!("={}\r\n{body}\r\n", body.len()).as_bytes());
                } else {
                    encode::bulk(&mut b, text.as_bytes());
                }
                alloc.ready(b.freeze(), After::Nothing);
                Flow::Next
            }
            Cluster::ClusterCmd if args.len() == 3 && sub(&["keyslot"]) => {
                let mut b = BytesMut::new();
                encode::int(&mut b, key_slot(args[2]) as i64);
                alloc.ready(b.freeze(), After::Nothing);
                Flow::Next
            }
            Cluster::Scan => self.scan(req, args, &primaries, alloc),
            Cluster::Ok => {
                let mut b = BytesMut::new();
                encode::simple(&mut b, "OK");
                alloc.ready(b.freeze(), After::Nothing);
                Flow::Next
            }
            // Everything else keyless (PUBLISH, RANDOMKEY, TIME, INFO, CONFIG,
            // COMMAND, CLUSTER ...; and malformed requests, which Redis rejects)
            // is answered by one primary, chosen per session to spread load.
            _ => {
                let addr = primaries[(self.st.id % primaries.len() as u64) as usize].clone();
                let conn = self.cluster_conn(&addr);
                let seq = alloc.pending();
                self.push(&conn, req.raw, Some((seq, WHOLE)), alloc);
                Flow::Next
            }
        }
    }

    fn all_primaries(
        &mut self,
        raw: &[u8],
        primaries: &[String],
        merge: Merge,
        alloc: &mut Alloc,
    ) -> Flow {
        let request = Bytes::copy_from_slice(raw);
        let seq = alloc.pending_parts(vec![request; primaries.len()], merge);
        for (i, addr) in primaries.iter().enumerate() {
            let conn = self.cluster_conn(addr);
            self.push(&conn, raw, Some((seq, i as u32)), alloc);
        }
        Flow::Next
    }

    fn scan(&mut self, req: &Req, args: &[&[u8]], primaries: &[String], alloc: &mut Alloc) -> Flow {
        let cursor = args
            .get(1)
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse::<u64>().ok());
        let Some(cursor) = cursor else {
            // Let Redis word the error for a bad cursor or missing argument.
            let addr = primaries[0].clone();
            let conn = self.cluster_conn(&addr);
            let seq = alloc.pending();
            self.push(&conn, req.raw, Some((seq, WHOLE)), alloc);
            return Flow::Next;
        };
        let node = (cursor & ((1 << SCAN_NODE_BITS) - 1)) as usize;
        let node_cursor = cursor >> SCAN_NODE_BITS;
        if node >= primaries.len() {
            let mut b = BytesMut::new();
            encode::array(&mut b, 2);
            encode::bulk(&mut b, b"0");
            encode::array(&mut b, 0);
            alloc.ready(b.freeze(), After::Nothing);
            return Flow::Next;
        }
        let c = node_cursor.to_string();
        let mut parts: Vec<&[u8]> = args.to_vec();
        parts[1] = c.as_bytes();
        let mut b = BytesMut::new();
        encode::command(&mut b, &parts);
        let request = b.freeze();
        let seq = alloc.pending_parts(
            vec![request.clone()],
            Merge::Scan {
                node: node as u32,
                nodes: primaries.len() as u32,
            },
        );
        let conn = self.cluster_conn(&primaries[node].clone());
        self.push(&conn, &request, Some((seq, 0)), alloc);
        Flow::Next
    }

    /// The slot map and key table, from a per-session snapshot taken again
    /// whenever the topology's version moves (two lock-and-clone pairs per
    /// request otherwise).
    fn routing(&mut self, topo: &Topology) -> (Arc<SlotMap>, Arc<KeyTable>) {
        let version = topo.version();
        match &self.routing {
            Some((v, m, k)) if *v == version => (m.clone(), k.clone()),
            _ => {
                let (m, k) = (topo.map(), topo.keys());
                self.routing = Some((version, m.clone(), k.clone()));
                (m, k)
            }
        }
    }

    /// Forgets the cached connections when the map or the protocol changed.
    fn check_conn_cache(&mut self) {
        let version = self.cluster.as_ref().map_or(0, |t| t.version());
        if self.cluster_proto != self.st.proto || self.cluster_version != version {
            // A changed map may have dropped nodes whose connections closed.
            self.cluster_conns.clear();
            self.recent_conns.clear();
            self.recent_map = None;
            self.cluster_proto = self.st.proto;
            self.cluster_version = version;
        }
    }

    /// [`Session::cluster_conn`] for an address held by `map`: found by the
    /// address's pointer, without hashing it, while the session keeps that
    /// same map (which keeps the string's allocation alive, so equal
    /// pointers are equal addresses).
    fn node_conn(&mut self, map: &Arc<SlotMap>, addr: &str) -> Conn {
        self.check_conn_cache();
        if !self
            .recent_map
            .as_ref()
            .is_some_and(|m| Arc::ptr_eq(m, map))
        {
            self.recent_map = Some(map.clone());
            self.recent_conns.clear();
        }
        let key = (addr.as_ptr() as usize, addr.len());
        if let Some((_, c)) = self.recent_conns.iter().find(|(k, _)| *k == key) {
            return c.clone();
        }
        let c = self.cluster_conn(addr);
        if self.recent_conns.len() < RECENT_CONNS {
            self.recent_conns.push((key, c.clone()));
        }
        c
    }

    /// This session's shared connection to a cluster node.
    pub(super) fn cluster_conn(&mut self, addr: &str) -> Conn {
        self.check_conn_cache();
        if let Some(c) = self.cluster_conns.get(addr) {
            return c.clone();
        }
        let node = self.worker.node_at(&self.ctx.config, addr);
        let c = node.shared(0, self.st.proto, self.st.id);
        self.cluster_conns.insert(Arc::from(addr), c.clone());
        c
    }

    /// Where a redirected request goes now, and whether it needs `ASKING` first.
    pub(super) fn cluster_redirect(&mut self, r: &Redirected) -> Option<(Conn, bool)> {
        let topo = self.cluster.clone()?;
        let default_host = self.ctx.config.upstream.default_host();
        let line = r.reply.strip_prefix(b"-").unwrap_or(&r.reply);
        if line.starts_with(b"TRYAGAIN") || line.starts_with(b"CLUSTERDOWN") {
            if line.starts_with(b"CLUSTERDOWN") {
                // A failover is under way: the map is about to change.
                topo.request_refresh();
            }
            // Keys of the slot are being migrated: ask the slot's owner again.
            let args = super::split_request(&r.request)?;
            let keys = topo.keys().keys_of(&args).ok()?;
            let slot = key_slot(args.get(*keys.first()?)?);
            let addr = topo.map().node_for(slot)?.primary.clone();
            return Some((self.cluster_conn(&addr), false));
        }
        let redirect = parse_redirect(line.strip_suffix(b"\r\n").unwrap_or(line), &default_host)?;
        match redirect.kind {
            RedirectKind::Moved => {
                topo.moved(redirect.slot, &redirect.addr);
                Some((self.cluster_conn(&redirect.addr), false))
            }
            RedirectKind::Ask => Some((self.cluster_conn(&redirect.addr), true)),
        }
    }

    /// Cluster: MULTI waits for the first command to know which node runs the
    /// transaction (as cluster clients do); until then it is answered here.
    pub(super) fn defer_multi(&mut self, alloc: &mut Alloc) -> Flow {
        self.tx_wait = TxWait::Multi;
        let mut b = BytesMut::new();
        encode::simple(&mut b, "OK");
        alloc.ready(b.freeze(), After::Nothing);
        Flow::Next
    }

    /// The first command after a deferred MULTI. A command Redis would queue
    /// goes, after MULTI, to the node of its first key; a keyless one to a
    /// provisional node (its reply is Redis's own: `+QUEUED`, or the error
    /// that will abort the transaction), which the first keyed command may
    /// still change ([`Session::keyless_multi`]). The others (AUTH, CLIENT,
    /// PROXY, ...) are answered as inside any transaction.
    pub(super) fn deferred_multi(&mut self, req: &Req, kind: Kind, alloc: &mut Alloc) -> Flow {
        use crate::command::{Local, Tx};
        let local = |alloc: &mut Alloc, reply: &'static [u8]| {
            alloc.ready(Bytes::from_static(reply), After::Nothing);
            Flow::Next
        };
        match kind {
            Kind::Transaction(Tx::Exec) => {
                self.tx_wait = TxWait::No;
                local(alloc, b"*0\r\n")
            }
            Kind::Transaction(Tx::Discard) => {
                self.tx_wait = TxWait::No;
                local(alloc, b"+OK\r\n")
            }
            Kind::Transaction(Tx::Multi) => local(alloc, b"-ERR MULTI calls can not be nested\r\n"),
            // Redis's answer on the node of the key (elsewhere it would be
            // MOVED): the transaction goes on unharmed.
            Kind::Transaction(Tx::Watch) => {
                local(alloc, b"-ERR WATCH inside MULTI is not allowed\r\n")
            }
            Kind::Local(l @ (Local::Quit | Local::Reset)) => {
                self.tx_wait = TxWait::No;
                self.local(l, req, alloc)
            }
            _ if super::queued_in_multi(kind) => {
                self.tx_wait = TxWait::No;
                let slot = self.tx_slot(req);
                let addr = self.tx_addr(slot);
                self.pin_at(&addr, self.st.db, self.st.proto);
                let conn = match &mut self.pinned {
                    Some(p) => {
                        p.in_multi = true;
                        p.conn.clone()
                    }
                    None => return Flow::Next,
                };
                // MULTI's own +OK was already given.
                self.push(&conn, MULTI, Some((DISCARD, WHOLE)), alloc);
                if kind == Kind::Passthrough {
                    // Queued as it is (the session does not enter pub/sub).
                    let seq = alloc.pending();
                    self.push(&conn, req.raw, Some((seq, WHOLE)), alloc);
                    return Flow::Next;
                }
                if slot.is_none() {
                    let copy = self.arena_copy(req.raw);
                    self.tx_wait = TxWait::Keyless(Held {
                        requests: vec![copy],
                        bytes: req.raw.len(),
                    });
                }
                self.route_known(req, kind, alloc)
            }
            // AUTH, CLIENT, PROXY, ...: answered here, as inside any MULTI.
            _ => self.route_known(req, kind, alloc),
        }
    }

    /// A command of a transaction that so far queued only keyless commands,
    /// on a provisional node. The first keyed command decides the node: when
    /// it is another one, the provisional transaction is discarded and MULTI
    /// and the keyless commands are queued again on the right node (their
    /// replies there are dropped: the client had Redis's replies from the
    /// provisional node, and the same commands give the same replies), then
    /// the keyed command. A transaction without keys runs where it is.
    pub(super) fn keyless_multi(&mut self, req: &Req, kind: Kind, alloc: &mut Alloc) -> Flow {
        use crate::command::{Local, Tx};
        if !self
            .pinned
            .as_ref()
            .is_some_and(|p| p.in_multi && !p.passthrough)
        {
            // The provisional connection failed: the transaction is gone.
            self.tx_wait = TxWait::No;
            return self.route_known(req, kind, alloc);
        }
        let may_have_key = matches!(
            kind,
            Kind::Forward | Kind::Blocking | Kind::BlockingIfArg(_) | Kind::Transaction(Tx::Watch)
        );
        if let Some(slot) = may_have_key.then(|| self.tx_slot(req)).flatten() {
            self.settle_tx_node(slot, alloc);
            return self.route_known(req, kind, alloc);
        }
        match kind {
            Kind::Passthrough
            | Kind::Transaction(Tx::Exec | Tx::Discard)
            | Kind::Local(Local::Quit | Local::Reset) => self.tx_wait = TxWait::No,
            _ if super::queued_in_multi(kind) => {
                let fits = match &self.tx_wait {
                    TxWait::Keyless(h) => h.bytes + req.raw.len() <= HELD_MAX_BYTES,
                    _ => false,
                };
                if fits {
                    let copy = self.arena_copy(req.raw);
                    if let TxWait::Keyless(h) = &mut self.tx_wait {
                        h.bytes += copy.len();
                        h.requests.push(copy);
                    }
                } else {
                    // Too much to hold: the transaction stays where it is.
                    self.tx_wait = TxWait::No;
                }
            }
            _ => {}
        }
        self.route_known(req, kind, alloc)
    }

    /// The first key of a transaction is in `slot`: move the transaction
    /// from its provisional node to the slot's primary if that is another.
    fn settle_tx_node(&mut self, slot: u16, alloc: &mut Alloc) {
        let TxWait::Keyless(held) = std::mem::replace(&mut self.tx_wait, TxWait::No) else {
            return;
        };
        let Some(topo) = self.cluster.clone() else {
            return;
        };
        let Some(addr) = topo.map().node_for(slot).map(|s| s.primary.clone()) else {
            // No owner known: Redis will say where the slot is.
            return;
        };
        let Some(old) = self.pinned.take_if(|p| **p.conn.addr() != *addr) else {
            return;
        };
        // Nothing of the provisional transaction runs. The connection goes
        // back to the pool once every reply this session waits for is in
        // (DISCARD's own reply, dropped, comes before anything queued by
        // the connection's next user).
        self.push(&old.conn, DISCARD_CMD, Some((DISCARD, WHOLE)), alloc);
        let (db, proto, queued_db) = (old.db, old.proto, old.queued_db);
        self.retired.push(old);
        self.pin_at(&Arc::from(addr.as_str()), db, proto);
        let conn = match &mut self.pinned {
            Some(p) => {
                p.in_multi = true;
                p.queued_db = queued_db;
                p.conn.clone()
            }
            None => return,
        };
        self.push(&conn, MULTI, Some((DISCARD, WHOLE)), alloc);
        for r in &held.requests {
            self.push(&conn, r, Some((DISCARD, WHOLE)), alloc);
        }
    }

    /// The slot of the request's first key (or shard channel), if it has one.
    fn tx_slot(&self, req: &Req) -> Option<u16> {
        let topo = self.cluster.as_ref()?;
        let args: Vec<&[u8]> = (0..req.argc()).map(|i| req.arg(i)).collect();
        let keys = topo.keys();
        let cmd = keys.resolve(&args).ok()?;
        let routed = cmd.routing_args_of(&args).ok()?;
        routed.first().map(|&i| key_slot(args[i]))
    }

    /// The primary of `slot`, else the fixed node (a keyless request's
    /// provisional node; the node of `SUBSCRIBE`/`PSUBSCRIBE`, where
    /// `PUBLISH` and `PUBSUB` go too, so their counts are one server's).
    fn tx_addr(&self, slot: Option<u16>) -> Arc<str> {
        let Some(topo) = &self.cluster else {
            return self.worker.node().addr().clone();
        };
        let map = topo.map();
        if let Some(shard) = slot.and_then(|s| map.node_for(s)) {
            return shard.primary.as_str().into();
        }
        let primaries = map.serving_primaries();
        if primaries.is_empty() {
            return self.worker.node().addr().clone();
        }
        Arc::from(fixed_node(&map, &primaries))
    }

    /// The node a pinned connection goes to: the slot owner of the request's
    /// first key (or channel, for SSUBSCRIBE), else the first primary.
    pub(super) fn pin_addr(&self, req: &Req) -> Arc<str> {
        self.tx_addr(self.tx_slot(req))
    }
}

/// The reply merge of a table's all-primaries policy.
fn merge_of(m: table::Merge) -> Merge {
    match m {
        table::Merge::SumInt => Merge::SumInt,
        table::Merge::Concat => Merge::Concat,
        table::Merge::AllOk => Merge::AllOk,
        table::Merge::AnyOk => Merge::AnyOk,
        table::Merge::AnyNonNil => Merge::AnyNonNil,
        table::Merge::SumPairs => Merge::SumPairs,
    }
}

/// The node of [`Cluster::Fixed`]: the primary serving slot 0, else the
/// first serving primary.
fn fixed_node(map: &SlotMap, primaries: &[String]) -> String {
    map.node_for(0)
        .map(|s| s.primary.clone())
        .unwrap_or_else(|| primaries[0].clone())
}

/// `CLUSTER INFO` for the proxy as a single node owning every served slot.
fn cluster_info(map: &SlotMap) -> String {
    let covered = map.covered_slots();
    let state = if map.is_complete() { "ok" } else { "fail" };
    format!(
        "cluster_state:{state}\r\ncluster_slots_assigned:{covered}\r\ncluster_slots_ok:{covered}\r\n\
         cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:1\r\ncluster_size:1\r\n\
         cluster_current_epoch:0\r\ncluster_my_epoch:0\r\n"
    )
}
