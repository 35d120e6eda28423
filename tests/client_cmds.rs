//! `CLIENT LIST` filters, `CLIENT INFO` fields, `CLIENT GETREDIR`,
//! `CLIENT TRACKINGINFO` and `CLIENT HELP` for respite's own clients, with
//! Redis 7.0's reply shapes (issue 15, item 9). Where the reply does not
//! depend on which server answers, it is compared with Redis's bytes.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{assert_reply, escape, Proxy, RawConn, RedisServer};

/// The text of a bulk (RESP2) or verbatim (RESP3) string reply.
fn text(reply: &[u8]) -> String {
    let s = String::from_utf8_lossy(reply).into_owned();
    let body = s.split_once("\r\n").map(|(_, b)| b).unwrap_or("");
    let body = body.strip_suffix("\r\n").unwrap_or(body);
    body.strip_prefix("txt:").unwrap_or(body).to_string()
}

fn id(c: &mut RawConn) -> u64 {
    let r = c.cmd_str(&["CLIENT", "ID"]);
    String::from_utf8_lossy(&r[1..r.len() - 2]).parse().unwrap()
}

/// `field=value` pairs of one CLIENT LIST line, in order.
fn fields(line: &str) -> Vec<(String, String)> {
    line.split(' ')
        .map(|f| {
            let (k, v) = f.split_once('=').unwrap_or((f, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn field(line: &str, name: &str) -> String {
    fields(line)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

fn lines(reply: &[u8]) -> Vec<String> {
    text(reply).lines().map(str::to_string).collect()
}

#[test]
fn help_getredir_trackinginfo_match_redis() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis);
    let mut d = redis.conn();
    let mut p = proxy.conn();
    for cmd in [
        &["CLIENT", "HELP"][..],
        &["CLIENT", "GETREDIR"],
        &["CLIENT", "TRACKINGINFO"],
        &["CLIENT", "HELP", "x"],
        &["CLIENT", "GETREDIR", "x"],
        &["CLIENT", "TRACKINGINFO", "x"],
        &["CLIENT", "LIST", "TYPE", "nosuch"],
        &["CLIENT", "LIST", "TYPE", "normal", "extra"],
        &["CLIENT", "LIST", "TYPE"],
        &["CLIENT", "LIST", "ID"],
        &["CLIENT", "LIST", "ID", "1", "x"],
        &["CLIENT", "LIST", "ID", "99999999999999999999"],
        &["CLIENT", "LIST", "TYPE", "normal", "ID", "1"],
        &["CLIENT", "LIST", "ID", "123456789"],
        &["CLIENT", "LIST", "ID", "-1"],
        &["CLIENT", "LIST", "TYPE", "master"],
        &["CLIENT", "LIST", "TYPE", "replica"],
        &["CLIENT", "LIST", "TYPE", "SLAVE"],
        &["CLIENT", "LIST", "foo"],
    ] {
        let want = d.cmd_str(cmd);
        assert_reply(&p.cmd_str(cmd), &want);
    }
    // RESP3: maps and sets, and the tracking state of a connection with
    // tracking on (respite's pinned connection answers, as Redis would).
    d.cmd_str(&["HELLO", "3"]);
    p.cmd_str(&["HELLO", "3"]);
    for cmd in [&["CLIENT", "TRACKINGINFO"][..], &["CLIENT", "GETREDIR"]] {
        let want = d.cmd_str(cmd);
        assert_reply(&p.cmd_str(cmd), &want);
    }
    for setup in [
        &["CLIENT", "TRACKING", "on"][..],
        &["CLIENT", "TRACKING", "off"],
        &[
            "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "a", "PREFIX", "redirect", "NOLOOP",
        ],
    ] {
        assert_reply(&p.cmd_str(setup), &d.cmd_str(setup));
        for cmd in [&["CLIENT", "TRACKINGINFO"][..], &["CLIENT", "GETREDIR"]] {
            let want = d.cmd_str(cmd);
            assert_reply(&p.cmd_str(cmd), &want);
        }
    }
}

#[test]
fn tracking_redirect_to_a_client_without_a_subscription_is_refused_clearly() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis);
    let mut target = proxy.conn();
    let tid = id(&mut target).to_string();
    let mut c = proxy.conn();
    let r = c.cmd_str(&["CLIENT", "TRACKING", "on", "REDIRECT", &tid]);
    assert!(
        r.starts_with(b"-ERR CLIENT TRACKING REDIRECT: client ")
            && r.ends_with(b"(it must SUBSCRIBE __redis__:invalidate through respite first)\r\n"),
        "{}",
        escape(&r)
    );
    // Nothing changed: tracking is still off.
    assert_reply(&c.cmd_str(&["CLIENT", "GETREDIR"]), b":-1\r\n");
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");
}

#[test]
fn list_filters_by_id_type_and_user() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis);
    let mut a = proxy.conn();
    let mut b = proxy.conn();
    let mut s = proxy.conn();
    let (ia, ib, is) = (id(&mut a), id(&mut b), id(&mut s));

    // ID: the listed clients in argument order, a repeated id again (Redis
    // 7.0 does the same), unknown ids skipped.
    let r = a.cmd_str(&[
        "CLIENT",
        "LIST",
        "ID",
        &ib.to_string(),
        "424242",
        &ia.to_string(),
        &ib.to_string(),
    ]);
    assert!(r.starts_with(b"$"), "{}", escape(&r));
    let ids: Vec<u64> = lines(&r)
        .iter()
        .map(|l| field(l, "id").parse().unwrap())
        .collect();
    assert_eq!(ids, vec![ib, ia, ib]);

    // A subscriber: flags=P, its counts and its last command, as Redis shows them.
    s.send(&common::encode_str(&["SUBSCRIBE", "ch1", "ch2"]));
    s.read_reply();
    s.read_reply();
    s.send(&common::encode_str(&["PSUBSCRIBE", "p*"]));
    s.read_reply();
    let pubsub = lines(&a.cmd_str(&["CLIENT", "LIST", "TYPE", "pubsub"]));
    assert_eq!(pubsub.len(), 1, "{pubsub:?}");
    let line = &pubsub[0];
    assert_eq!(field(line, "id"), is.to_string());
    assert_eq!(field(line, "flags"), "P");
    assert_eq!(field(line, "sub"), "2");
    assert_eq!(field(line, "psub"), "1");
    assert_eq!(field(line, "ssub"), "0");
    assert_eq!(field(line, "cmd"), "psubscribe");
    let normal = lines(&a.cmd_str(&["CLIENT", "LIST", "TYPE", "NORMAL"]));
    let mut ids: Vec<u64> = normal
        .iter()
        .map(|l| field(l, "id").parse().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![ia, ib]);
    for l in &normal {
        assert_eq!(field(l, "flags"), "N");
    }
    // Leaving one kind keeps the other's count; leaving all clears P.
    s.send(&common::encode_str(&["UNSUBSCRIBE"]));
    s.read_reply();
    s.read_reply();
    let line = &lines(&a.cmd_str(&["CLIENT", "LIST", "ID", &is.to_string()]))[0];
    assert_eq!(
        (field(line, "sub"), field(line, "psub")),
        ("0".into(), "1".into())
    );
    assert_eq!(field(line, "flags"), "P");
    assert_eq!(field(line, "cmd"), "unsubscribe");
    s.send(&common::encode_str(&["RESET"]));
    assert_reply(&s.read_reply(), b"+RESET\r\n");
    let line = &lines(&a.cmd_str(&["CLIENT", "LIST", "ID", &is.to_string()]))[0];
    assert_eq!(field(line, "flags"), "N");
    assert_eq!(field(line, "psub"), "0");
    assert_eq!(field(line, "cmd"), "reset");
    assert!(lines(&a.cmd_str(&["CLIENT", "LIST", "TYPE", "pubsub"])).is_empty());

    // USER (an addition to Redis 7.0's filters).
    assert_eq!(
        lines(&a.cmd_str(&["CLIENT", "LIST", "USER", "default"])).len(),
        3
    );
    assert_reply(
        &a.cmd_str(&["CLIENT", "LIST", "USER", "nobody"]),
        b"$0\r\n\r\n",
    );
}

#[test]
fn lines_have_redis_fields_and_last_command() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis);
    let mut d = redis.conn();
    let mut a = proxy.conn();
    let mut b = proxy.conn();
    let ib = id(&mut b).to_string();

    // The same fields in the same order as Redis's own line.
    let theirs = text(&d.cmd_str(&["CLIENT", "INFO"]));
    let ours = text(&a.cmd_str(&["CLIENT", "INFO"]));
    let names = |l: &str| {
        fields(l.trim_end())
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&ours), names(&theirs), "ours: {ours:?}");
    assert_eq!(field(ours.trim_end(), "cmd"), "client|info");
    assert_eq!(field(ours.trim_end(), "user"), "default");

    let last_cmd = |a: &mut RawConn| {
        let l = &lines(&a.cmd_str(&["CLIENT", "LIST", "ID", &ib]))[0];
        field(l, "cmd")
    };
    // Before any command other than CLIENT ID, then as each kind of name.
    assert_eq!(last_cmd(&mut a), "client|id");
    for (cmd, want) in [
        (&["GET", "k"][..], "get"),
        (&["get", "k"], "get"),
        (&["CONFIG", "GET", "maxmemory"], "config|get"),
        (&["CLIENT", "nosuch"], "NULL"),
        (&["NOSUCHCOMMAND"], "NULL"),
        (&["SET", "k", "v"], "set"),
        (&["CLIENT"], "client"),
        (&["SET", "k", "v"], "set"),
    ] {
        b.cmd_str(cmd);
        assert_eq!(last_cmd(&mut a), want, "after {cmd:?}");
    }
    // Redis shows the same names.
    let did = id(&mut d).to_string();
    let mut d2 = redis.conn();
    for (cmd, want) in [
        (&["CONFIG", "GET", "maxmemory"][..], "config|get"),
        (&["CLIENT", "nosuch"], "NULL"),
    ] {
        d.cmd_str(cmd);
        let l = &lines(&d2.cmd_str(&["CLIENT", "LIST", "ID", &did]))[0];
        assert_eq!(field(l, "cmd"), want);
    }

    // idle counts from the client's last command; age from its connection.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let l = &lines(&a.cmd_str(&["CLIENT", "LIST", "ID", &ib]))[0];
        let (age, idle): (u64, u64) = (
            field(l, "age").parse().unwrap(),
            field(l, "idle").parse().unwrap(),
        );
        assert!(idle <= age, "{l}");
        if idle >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "idle never grew: {l}");
        thread::sleep(Duration::from_millis(100));
    }
    b.cmd_str(&["PING"]);
    let l = &lines(&a.cmd_str(&["CLIENT", "LIST", "ID", &ib]))[0];
    assert_eq!(field(l, "idle"), "0");
    assert_eq!(field(l, "cmd"), "ping");
}

/// `cmd=` names come from a list of Redis 7.0's commands; it must be the
/// live server's (when that is 7.0: other versions add or drop commands).
#[test]
fn command_names_are_redis_7_0s() {
    let redis = RedisServer::start();
    let mut d = redis.conn();
    let info = String::from_utf8_lossy(&d.cmd_str(&["INFO", "server"])).into_owned();
    if !info.contains("redis_version:7.0.") {
        eprintln!("skipped: the list is Redis 7.0's");
        return;
    }
    let reply = d.cmd_str(&["COMMAND", "LIST"]);
    let (items, _) =
        common::split_frames(&reply[reply.iter().position(|&b| b == b'\n').unwrap() + 1..])
            .unwrap();
    let mut live: Vec<String> = items.iter().map(|f| text(f)).collect();
    live.sort();
    let ours: Vec<String> = respite::server::command_names::NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(ours, live);
}
