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

/// What one scenario's `CLIENT LIST ID a b`, `CLIENT LIST TYPE pubsub`,
/// `CLIENT GETREDIR` and `CLIENT TRACKINGINFO` replies look like to a
/// client speaking RESP `proto`, with every value that depends on the server (ids, addresses,
/// ages, memory) replaced: ids by the client's letter, the rest by `*`.
/// Client A tracks with `REDIRECT` to S, subscribed to
/// `__redis__:invalidate`; B has a name; S also subscribes to a pattern;
/// M has two commands queued in MULTI; W is blocked in BLPOP.
fn shapes(redis: &RedisServer, port: u16, proto: &str) -> Vec<String> {
    let mut a = RawConn::connect(port);
    let hello = a.cmd_str(&["HELLO", proto]);
    assert!(!hello.starts_with(b"-"), "{}", escape(&hello));
    let mut b = RawConn::connect(port);
    let mut s = RawConn::connect(port);
    let mut m = RawConn::connect(port);
    let mut w = RawConn::connect(port);
    let ids = [
        (id(&mut a).to_string(), "A"),
        (id(&mut b).to_string(), "B"),
        (id(&mut s).to_string(), "S"),
        (id(&mut m).to_string(), "M"),
        (id(&mut w).to_string(), "W"),
    ];
    assert_reply(&m.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&m.cmd_str(&["SET", "shape:k", "v"]), b"+QUEUED\r\n");
    assert_reply(&m.cmd_str(&["GET", "shape:k"]), b"+QUEUED\r\n");
    w.send(&common::encode_str(&["BLPOP", "shape:never", "0"]));
    let mut r = redis.conn();
    common::wait_until("W blocked", Duration::from_secs(10), || {
        common::info_field(&r.cmd_str(&["INFO", "clients"]), "blocked_clients") == Some(1)
    });
    let name = |v: &str| {
        ids.iter()
            .find(|(i, _)| i == v)
            .map_or_else(|| v.to_string(), |(_, n)| n.to_string())
    };
    s.send(&common::encode_str(&[
        "SUBSCRIBE",
        "__redis__:invalidate",
        "ch1",
    ]));
    s.read_reply();
    s.read_reply();
    s.send(&common::encode_str(&["PSUBSCRIBE", "p*"]));
    s.read_reply();
    assert_reply(&b.cmd_str(&["CLIENT", "SETNAME", "bee"]), b"+OK\r\n");
    assert_reply(
        &a.cmd_str(&["CLIENT", "TRACKING", "on", "REDIRECT", &ids[2].0]),
        b"+OK\r\n",
    );
    let keep = [
        "name", "flags", "db", "sub", "psub", "ssub", "multi", "cmd", "user", "resp",
    ];
    let list = |reply: &[u8]| {
        let mut out = format!("type {} ", reply[0] as char);
        for l in lines(reply) {
            // Only the scenario's clients (directly, Redis also lists the
            // test's own connections, and respite's).
            if !ids.iter().any(|(i, _)| *i == field(&l, "id")) {
                continue;
            }
            for (k, v) in fields(l.trim_end()) {
                let v = match k.as_str() {
                    "id" | "redir" => name(&v),
                    k if keep.contains(&k) => v,
                    _ => "*".to_string(),
                };
                out.push_str(&format!("{k}={v} "));
            }
            out.push('|');
        }
        out
    };
    let redirected = |reply: Vec<u8>| {
        String::from_utf8_lossy(&reply).replace(&format!(":{}\r\n", ids[2].0), ":S\r\n")
    };
    let mut out = Vec::new();
    {
        out.push(list(&a.cmd_str(&[
            "CLIENT", "LIST", "ID", &ids[0].0, &ids[1].0, &ids[3].0, &ids[4].0,
        ])));
        out.push(list(&a.cmd_str(&["CLIENT", "LIST", "TYPE", "pubsub"])));
        out.push(list(&a.cmd_str(&["CLIENT", "LIST", "TYPE", "normal"])));
        out.push(list(&a.cmd_str(&["CLIENT", "INFO"])));
        out.push(redirected(a.cmd_str(&["CLIENT", "GETREDIR"])));
        out.push(redirected(a.cmd_str(&["CLIENT", "TRACKINGINFO"])));
    }
    // Out of the transaction, tracking off: back to N and -1.
    assert_reply(&m.cmd_str(&["DISCARD"]), b"+OK\r\n");
    assert_reply(&a.cmd_str(&["CLIENT", "TRACKING", "off"]), b"+OK\r\n");
    out.push(list(
        &a.cmd_str(&["CLIENT", "LIST", "ID", &ids[0].0, &ids[3].0]),
    ));
    drop(w);
    common::wait_until("W gone", Duration::from_secs(10), || {
        common::info_field(&r.cmd_str(&["INFO", "clients"]), "blocked_clients") == Some(0)
    });
    out
}

/// Acceptance 8 of issue 15: the reply shapes of `CLIENT LIST ID a b`,
/// `CLIENT LIST TYPE pubsub`, `CLIENT GETREDIR` and `CLIENT TRACKINGINFO`
/// (with a redirect to a subscribed client) through respite are Redis's:
/// the same lines, fields, flags and counts, ids naming the same clients.
#[test]
fn list_getredir_trackinginfo_shapes_match_redis_side_by_side() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis);
    let mut direct = shapes(&redis, redis.port(), "2");
    let mut through = shapes(&redis, proxy.port(), "2");
    direct.extend(shapes(&redis, redis.port(), "3"));
    through.extend(shapes(&redis, proxy.port(), "3"));
    assert_eq!(direct.len(), through.len());
    for (d, t) in direct.iter().zip(&through) {
        assert_eq!(t, d, "\n  respite: {t}\n  redis:   {d}");
    }
}
