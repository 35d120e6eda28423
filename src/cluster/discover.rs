//! Building a [`SlotMap`] from what a cluster node says about the topology:
//! `CLUSTER SHARDS` (Redis 7+, preferred: it reports each node's health) or
//! `CLUSTER SLOTS` (every version since 3.0, the fallback).
//!
//! Both take the raw reply bytes, RESP2 or RESP3, and the host the reply came
//! from, used when a node's address is unknown to the cluster itself
//! (`cluster-preferred-endpoint-type unknown-endpoint`). Address choice, in
//! order: the node's preferred `endpoint`, its `ip`, the replying host. An
//! endpoint of `?` (hostname preferred but not set) or empty counts as unknown.

use super::slots::{NodeAddr, Shard, SlotMap, SLOT_COUNT};
use super::{join_host_port, TopologyError};
use crate::protocol::Value;

impl SlotMap {
    /// Parses a `CLUSTER SHARDS` reply.
    ///
    /// Each shard contributes its `master` node as primary (the first one
    /// reported `online` when a failover leaves two) and its `online` replicas;
    /// replicas still `loading` or failed would only answer errors. A shard
    /// with no primary contributes no slots; a shard with neither slots nor
    /// a healthy primary (a dead primary after its failover) is left out.
    pub fn from_cluster_shards(reply: &[u8], reply_host: &str) -> Result<SlotMap, TopologyError> {
        Self::from_cluster_shards_over(reply, reply_host, false)
    }

    /// As [`SlotMap::from_cluster_shards`]; `tls`: respite reaches the
    /// nodes with TLS (`[upstream.tls]`), so a node's `tls-port` is the one
    /// to use when it has both (Redis with `tls-port` beside `port`).
    pub fn from_cluster_shards_over(
        reply: &[u8],
        reply_host: &str,
        tls: bool,
    ) -> Result<SlotMap, TopologyError> {
        let value = decode(reply)?;
        let list = value
            .as_array()
            .ok_or_else(|| shape("CLUSTER SHARDS reply is not an array"))?;
        let mut shards = Vec::new();
        let mut ranges = Vec::new();
        for entry in list {
            let slots = entry
                .get("slots")
                .and_then(Value::as_array)
                .ok_or_else(|| shape("shard without a slots array"))?;
            let nodes = entry
                .get("nodes")
                .and_then(Value::as_array)
                .ok_or_else(|| shape("shard without a nodes array"))?;
            if slots.len() % 2 != 0 {
                return Err(shape("shard slots list has an odd length"));
            }
            // (address, online) of the chosen primary.
            let mut primary: Option<(NodeAddr, bool)> = None;
            let mut replicas = Vec::new();
            for node in nodes {
                let addr = shard_node_addr(node, reply_host, tls)?;
                let online = field(node, "health") == Some(b"online".as_slice());
                if field(node, "role") == Some(b"master".as_slice()) {
                    let better = match &primary {
                        None => true,
                        Some((_, was_online)) => online && !was_online,
                    };
                    if let (true, Some(addr)) = (better, addr) {
                        primary = Some((addr, online));
                    }
                } else if let (true, Some(addr)) = (online, addr) {
                    replicas.push(addr);
                }
            }
            let Some((primary, online)) = primary else {
                continue;
            };
            // After a failover Redis 7.0 still lists the dead former primary,
            // as a slotless shard of its own, until it comes back as a
            // replica: a fan-out to every primary must not wait on it.
            if slots.is_empty() && !online {
                continue;
            }
            let index = shards.len();
            for pair in slots.chunks_exact(2) {
                ranges.push((slot(&pair[0])?, slot(&pair[1])?, index));
            }
            shards.push(Shard { primary, replicas });
        }
        SlotMap::from_parts(shards, ranges)
    }

    /// Parses a `CLUSTER SLOTS` reply: `[start, end, primary, replica...]`
    /// per range, each node `[host, port, id, {metadata}]`. Ranges with the
    /// same primary become one shard.
    pub fn from_cluster_slots(reply: &[u8], reply_host: &str) -> Result<SlotMap, TopologyError> {
        let value = decode(reply)?;
        let list = value
            .as_array()
            .ok_or_else(|| shape("CLUSTER SLOTS reply is not an array"))?;
        let mut shards: Vec<Shard> = Vec::new();
        let mut ranges = Vec::new();
        for entry in list {
            let items = entry
                .as_array()
                .filter(|a| a.len() >= 3)
                .ok_or_else(|| shape("CLUSTER SLOTS entry is not [start, end, node, ...]"))?;
            let (start, end) = (slot(&items[0])?, slot(&items[1])?);
            let Some(primary) = slots_node_addr(&items[2], reply_host)? else {
                continue;
            };
            let index = match shards.iter().position(|s| s.primary == primary) {
                Some(i) => i,
                None => {
                    shards.push(Shard::new(primary));
                    shards.len() - 1
                }
            };
            for node in &items[3..] {
                if let Some(addr) = slots_node_addr(node, reply_host)? {
                    if !shards[index].replicas.contains(&addr) {
                        shards[index].replicas.push(addr);
                    }
                }
            }
            ranges.push((start, end, index));
        }
        SlotMap::from_parts(shards, ranges)
    }
}

fn decode(reply: &[u8]) -> Result<Value, TopologyError> {
    match Value::decode_exact(reply)? {
        Value::Error(e) => Err(TopologyError::ErrorReply(
            String::from_utf8_lossy(&e).into_owned(),
        )),
        v => Ok(v),
    }
}

fn shape(msg: &str) -> TopologyError {
    TopologyError::Shape(msg.to_string())
}

fn field<'a>(node: &'a Value, name: &str) -> Option<&'a [u8]> {
    node.get(name).and_then(Value::as_bytes)
}

fn slot(v: &Value) -> Result<u16, TopologyError> {
    v.as_int()
        .filter(|s| (0..SLOT_COUNT as i64).contains(s))
        .map(|s| s as u16)
        .ok_or_else(|| shape("slot number missing or out of range"))
}

/// A host field worth using: present, not empty, not `?`.
fn known_host(h: Option<&[u8]>) -> Option<&[u8]> {
    h.filter(|h| !h.is_empty() && *h != b"?")
}

fn host_text<'a>(host: Option<&'a [u8]>, reply_host: &'a str) -> Result<&'a str, TopologyError> {
    match host {
        Some(h) => std::str::from_utf8(h).map_err(|_| shape("node host is not UTF-8")),
        None => Ok(reply_host),
    }
}

fn port(v: Option<&Value>) -> Option<u16> {
    v.and_then(Value::as_int)
        .filter(|p| (1..=u16::MAX as i64).contains(p))
        .map(|p| p as u16)
}

/// A `CLUSTER SHARDS` node's address; `None` when it has no usable port
/// (a node still in handshake reports 0). The port of respite's transport
/// first (`tls-port` with `tls`, else `port`), the other as a last resort
/// for nodes that have only one.
fn shard_node_addr(
    node: &Value,
    reply_host: &str,
    tls: bool,
) -> Result<Option<NodeAddr>, TopologyError> {
    let (first, second) = if tls {
        ("tls-port", "port")
    } else {
        ("port", "tls-port")
    };
    let Some(port) = port(node.get(first)).or_else(|| port(node.get(second))) else {
        return Ok(None);
    };
    let host = known_host(field(node, "endpoint")).or_else(|| known_host(field(node, "ip")));
    Ok(Some(join_host_port(host_text(host, reply_host)?, port)))
}

/// A `CLUSTER SLOTS` node's address. The host is NULL or empty for an
/// unknown endpoint and `?` for an unset hostname; Redis 7 then still gives
/// the `ip` in the metadata map that follows the node id.
fn slots_node_addr(node: &Value, reply_host: &str) -> Result<Option<NodeAddr>, TopologyError> {
    let items = node
        .as_array()
        .filter(|a| a.len() >= 2)
        .ok_or_else(|| shape("CLUSTER SLOTS node is not [host, port, ...]"))?;
    let Some(port) = port(Some(&items[1])) else {
        return Ok(None);
    };
    let meta_ip = items
        .get(3)
        .and_then(|m| m.get("ip"))
        .and_then(Value::as_bytes);
    let host = known_host(items[0].as_bytes()).or_else(|| known_host(meta_ip));
    Ok(Some(join_host_port(host_text(host, reply_host)?, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node with a plaintext and a TLS port (`tls-port` beside `port`,
    /// `tls-cluster yes`): respite over TLS uses the TLS one.
    #[test]
    fn tls_port_is_preferred_over_tls() {
        let reply = "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n\
                     *12\r\n$2\r\nid\r\n$1\r\na\r\n$4\r\nport\r\n:7000\r\n$8\r\ntls-port\r\n:7100\r\n\
                     $2\r\nip\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$6\r\nhealth\r\n$6\r\nonline\r\n";
        let plain = SlotMap::from_cluster_shards_over(reply.as_bytes(), "x", false).unwrap();
        assert_eq!(plain.all_nodes(), vec!["127.0.0.1:7000".to_string()]);
        let tls = SlotMap::from_cluster_shards_over(reply.as_bytes(), "x", true).unwrap();
        assert_eq!(tls.all_nodes(), vec!["127.0.0.1:7100".to_string()]);
    }

    /// Replies captured from a redis-server 7.0.15 cluster of three primaries
    /// (127.0.0.1:27101..27103) with one replica each (27104..27106).
    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/redis-7.0/",
                $name,
                ".resp"
            ))
        };
    }

    fn shard(primary: &str, replicas: &[&str]) -> Shard {
        Shard {
            primary: primary.into(),
            replicas: replicas.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn assert_standard(m: &SlotMap, replicas: [&[&str]; 3]) {
        assert!(m.is_complete());
        assert_eq!(m.ranges().len(), 3);
        assert_eq!(m.node_for(0), Some(&shard("127.0.0.1:27101", replicas[0])));
        assert_eq!(
            m.node_for(5461),
            Some(&shard("127.0.0.1:27102", replicas[1]))
        );
        assert_eq!(
            m.node_for(16383),
            Some(&shard("127.0.0.1:27103", replicas[2]))
        );
    }

    const ALL: [&[&str]; 3] = [
        &["127.0.0.1:27104"],
        &["127.0.0.1:27105"],
        &["127.0.0.1:27106"],
    ];

    #[test]
    fn shards_healthy_cluster() {
        let m = SlotMap::from_cluster_shards(fixture!("shards-ok"), "x").unwrap();
        assert_standard(&m, ALL);
        assert_eq!(m.all_nodes().len(), 6);
    }

    #[test]
    fn slots_healthy_cluster() {
        let m = SlotMap::from_cluster_slots(fixture!("slots-ok"), "x").unwrap();
        assert_standard(&m, ALL);
        let shards = SlotMap::from_cluster_shards(fixture!("shards-ok"), "x").unwrap();
        assert_eq!(m, shards, "both commands describe the same cluster");
    }

    #[test]
    fn failed_replica_is_left_out() {
        // 27106 was killed; Redis 7.0 reports its health as "fail" (the docs say "failed").
        let want: [&[&str]; 3] = [ALL[0], ALL[1], &[]];
        let m = SlotMap::from_cluster_shards(fixture!("shards-replica-fail"), "x").unwrap();
        assert_standard(&m, want);
        let m = SlotMap::from_cluster_slots(fixture!("slots-replica-fail"), "x").unwrap();
        assert_standard(&m, want);
    }

    #[test]
    fn failed_primary_still_owns_its_slots() {
        // 27103 was killed and its replica had never synced, so no failover:
        // the slots stay with the failed primary, and the router finds out on
        // connect. The replica reports health "loading" (offset 0): not used.
        let m = SlotMap::from_cluster_shards(fixture!("shards-failover"), "x").unwrap();
        assert_standard(&m, [ALL[0], ALL[1], &[]]);
    }

    #[test]
    fn dead_former_primary_without_slots_is_left_out() {
        // The shape of Redis 7.0's reply after a failover: the old primary,
        // failed, as its own shard with no slots.
        let node = |port: u16, role: &str, health: &str| {
            format!(
                "*8\r\n$4\r\nport\r\n:{port}\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n\
                 $4\r\nrole\r\n${}\r\n{role}\r\n$6\r\nhealth\r\n${}\r\n{health}\r\n",
                role.len(),
                health.len()
            )
        };
        let shard = |slots: &str, nodes: &[String]| {
            format!(
                "*4\r\n$5\r\nslots\r\n{slots}$5\r\nnodes\r\n*{}\r\n{}",
                nodes.len(),
                nodes.concat()
            )
        };
        let reply = format!(
            "*3\r\n{}{}{}",
            shard("*2\r\n:0\r\n:16383\r\n", &[node(7001, "master", "online")]),
            shard("*0\r\n", &[node(7000, "master", "fail")]),
            shard("*0\r\n", &[node(7002, "master", "online")]),
        );
        let m = SlotMap::from_cluster_shards(reply.as_bytes(), "x").unwrap();
        assert!(m.is_complete());
        assert_eq!(m.primaries(), ["127.0.0.1:7001", "127.0.0.1:7002"]);
    }

    #[test]
    fn unknown_endpoint_falls_back_to_ip() {
        // cluster-preferred-endpoint-type unknown-endpoint: SHARDS sends an
        // empty endpoint, SLOTS a NULL host with the ip in the metadata.
        let m = SlotMap::from_cluster_shards(fixture!("shards-unknown-endpoint"), "x").unwrap();
        assert_eq!(m.node_for(0).unwrap().primary, "127.0.0.1:27101");
        let m = SlotMap::from_cluster_slots(fixture!("slots-unknown-endpoint"), "x").unwrap();
        assert_eq!(m.node_for(0).unwrap().primary, "127.0.0.1:27101");
        assert!(m.is_complete());
    }

    #[test]
    fn hostname_endpoint_is_preferred() {
        // Only 27102 announces a hostname; the others answer "?" and keep their ip.
        for m in [
            SlotMap::from_cluster_shards(fixture!("shards-hostname"), "x").unwrap(),
            SlotMap::from_cluster_slots(fixture!("slots-hostname"), "x").unwrap(),
        ] {
            assert_eq!(m.node_for(5461).unwrap().primary, "node-b.example:27102");
            assert_eq!(m.node_for(0).unwrap().primary, "127.0.0.1:27101");
            assert_eq!(m.node_for(0).unwrap().replicas, ["127.0.0.1:27104"]);
        }
    }

    #[test]
    fn missing_host_uses_the_replying_host() {
        let reply = b"*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$-1\r\n:7000\r\n$1\r\nx\r\n";
        let m = SlotMap::from_cluster_slots(reply, "10.0.0.9").unwrap();
        assert_eq!(m.node_for(42).unwrap().primary, "10.0.0.9:7000");
        let ipv6 = b"*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$3\r\n::1\r\n:7000\r\n";
        let m = SlotMap::from_cluster_slots(ipv6, "x").unwrap();
        assert_eq!(m.node_for(42).unwrap().primary, "[::1]:7000");
    }

    #[test]
    fn resp3_map_shaped_shards_reply() {
        let reply = b"*1\r\n%2\r\n+slots\r\n*2\r\n:0\r\n:16383\r\n+nodes\r\n*1\r\n\
            %5\r\n+port\r\n:7000\r\n+ip\r\n+10.0.0.1\r\n+endpoint\r\n+10.0.0.1\r\n\
            +role\r\n+master\r\n+health\r\n+online\r\n";
        let m = SlotMap::from_cluster_shards(reply, "x").unwrap();
        assert!(m.is_complete());
        assert_eq!(m.primaries(), ["10.0.0.1:7000"]);
    }

    #[test]
    fn bad_replies_are_errors_not_panics() {
        let err = SlotMap::from_cluster_slots(
            b"-ERR This instance has cluster support disabled\r\n",
            "x",
        );
        assert!(matches!(err, Err(TopologyError::ErrorReply(_))));
        for bad in [
            &b"+OK\r\n"[..],
            b"*1\r\n:1\r\n",
            b"*1\r\n*3\r\n:0\r\n:99999\r\n*2\r\n$1\r\na\r\n:1\r\n",
            b"*2\r\n*3\r\n:0\r\n:10\r\n*2\r\n$1\r\na\r\n:1\r\n*3\r\n:5\r\n:20\r\n*2\r\n$1\r\nb\r\n:1\r\n",
            b"*1\r\n*4\r\n$5\r\nslots\r\n*1\r\n:0\r\n$5\r\nnodes\r\n*0\r\n",
            b"*1\r\n*4\r\n$5\r\nslots\r\n*1\r\n:0\r\n",
            b"*3\r\n",
        ] {
            let a = SlotMap::from_cluster_slots(bad, "x");
            let b = SlotMap::from_cluster_shards(bad, "x");
            assert!(a.is_err() && b.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
