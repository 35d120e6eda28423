//! Users, ACL rules and the administrator role (issue 21 "Users", issue 15
//! item 8): proxy-side users checked before forwarding, with Redis's own
//! replies (compared byte for byte with the same user created in Redis),
//! and the guard on the credentials respite logs in to Redis with.

mod common;

use common::{escape, wait_until, Proxy, RawConn, RedisServer};
use std::time::Duration;

/// A proxy started with `config` (TOML) written to its own file.
fn proxy_with(upstream: &str, config: &str) -> (Proxy, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("auth.toml");
    std::fs::write(&path, config).expect("write config");
    let mut args = Proxy::default_args(upstream);
    args.push("--config".into());
    args.push(path.display().to_string());
    (Proxy::start_args(args), dir)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const READER_RULES: &str = "+@read +acl|whoami ~cache:*";
const WRITER_RULES: &str = "+@all -@dangerous ~*";

fn users_config() -> String {
    format!(
        "[auth]\npassword = \"defpw\"\n\
         [[auth.users]]\nname = \"reader\"\npassword = \"rpw\"\nrules = \"{READER_RULES}\"\n\
         [[auth.users]]\nname = \"writer\"\npassword_sha256 = \"{}\"\nrules = \"{WRITER_RULES}\"\n\
         [[auth.users]]\nname = \"boss\"\npassword = \"bosspw\"\nadmin = true\n",
        hex(&respite::auth::sha256(b"wpw"))
    )
}

fn show(b: &[u8]) -> String {
    escape(b)
}

/// Acceptance 21.4: the same user in Redis and in respite give the same
/// bytes for allowed commands, refused commands and keys, wrong passwords,
/// and a refused command inside MULTI; the tag commands have categories.
#[test]
fn users_match_redis() {
    let redis = RedisServer::start();
    let mut admin = redis.conn();
    for (user, pw, rules) in [
        ("reader", "rpw", READER_RULES),
        ("writer", "wpw", WRITER_RULES),
    ] {
        let mut args = vec!["ACL", "SETUSER", user, "on"];
        let pass = format!(">{pw}");
        args.push(&pass);
        args.extend(rules.split(' '));
        assert_eq!(admin.cmd_str(&args), b"+OK\r\n");
    }
    assert_eq!(admin.cmd_str(&["SET", "cache:1", "v"]), b"+OK\r\n");
    let (proxy, _dir) = proxy_with(&redis.addr(), &users_config());

    // The proxy learns the command table from Redis at startup.
    let mut p = proxy.conn();
    assert_eq!(p.cmd_str(&["AUTH", "reader", "rpw"]), b"+OK\r\n");
    wait_until("command table learned", Duration::from_secs(10), || {
        p.cmd_str(&["GET", "cache:1"]) == b"$1\r\nv\r\n"
    });

    let script: &[(&str, &[&str])] = &[
        ("reader", &["AUTH", "reader", "wrong"]),
        ("reader", &["AUTH", "nosuchuser", "rpw"]),
        ("reader", &["HELLO", "2", "AUTH", "reader", "wrong"]),
        ("reader", &["AUTH", "reader", "rpw"]),
        ("reader", &["GET", "cache:1"]),
        ("reader", &["SET", "cache:1", "x"]),
        ("reader", &["GET", "other"]),
        ("reader", &["MGET", "cache:1", "other"]),
        ("reader", &["MGET", "cache:1", "cache:2"]),
        ("reader", &["PING"]),
        ("reader", &["ACL", "WHOAMI"]),
        ("reader", &["CONFIG", "SET", "maxmemory", "0"]),
        ("reader", &["CONFIG", "GET", "maxmemory"]),
        ("reader", &["GET"]),
        ("reader", &["NOSUCHCOMMAND", "x"]),
        ("reader", &["SUBSCRIBE", "ch"]),
        ("reader", &["MULTI"]),
        ("writer", &["AUTH", "writer", "wpw"]),
        ("writer", &["SET", "w:1", "x"]),
        ("writer", &["KEYS", "*"]),
        ("writer", &["FLUSHALL"]),
        ("writer", &["MULTI"]),
        ("writer", &["SET", "w:2", "x"]),
        ("writer", &["FLUSHALL"]),
        ("writer", &["EXEC"]),
        ("writer", &["EXISTS", "w:2"]),
        ("writer", &["ACL", "WHOAMI"]),
        ("writer", &["PUBLISH", "ch", "m"]),
    ];
    let mut direct = RawConn::connect(redis.port());
    let mut proxied = proxy.conn();
    let mut current = "";
    for (user, args) in script {
        if *user != current {
            current = user;
            direct = RawConn::connect(redis.port());
            proxied = proxy.conn();
            let pw = if *user == "reader" { "rpw" } else { "wpw" };
            assert_eq!(direct.cmd_str(&["AUTH", user, pw]), b"+OK\r\n");
            assert_eq!(proxied.cmd_str(&["AUTH", user, pw]), b"+OK\r\n");
        }
        let want = direct.cmd_str(args);
        let got = proxied.cmd_str(args);
        assert_eq!(
            show(&got),
            show(&want),
            "{user}: {args:?} through respite vs Redis"
        );
    }

    // The tag commands: a read-only user may look tags up, not set or
    // invalidate them (Redis does not know these commands).
    let mut r = proxy.conn();
    assert_eq!(r.cmd_str(&["AUTH", "reader", "rpw"]), b"+OK\r\n");
    assert_eq!(
        show(&r.cmd_str(&["TAGINVAL", "t"])),
        show(b"-NOPERM this user has no permissions to run the 'taginval' command\r\n")
    );
    assert_eq!(
        show(&r.cmd_str(&["TAGSET", "cache:1", "v", "TAGS", "t"])),
        show(b"-NOPERM this user has no permissions to run the 'tagset' command\r\n")
    );
    assert!(!r.cmd_str(&["TAGKEYS", "t"]).starts_with(b"-NOPERM"));
    assert_eq!(
        show(&r.cmd_str(&["PROXY", "NODES"])),
        show(b"-NOPERM this user has no permissions to run the 'proxy' command\r\n")
    );
    // HELLO 3 AUTH logs in as the user.
    let mut h = proxy.conn();
    let hello = h.cmd_str(&["HELLO", "3", "AUTH", "writer", "wpw"]);
    assert!(hello.starts_with(b"%7\r\n"), "{}", show(&hello));
    assert_eq!(h.cmd_str(&["ACL", "WHOAMI"]), b"$6\r\nwriter\r\n");
    // A user without rules may do anything; ACL WHOAMI names it.
    let mut b = proxy.conn();
    assert_eq!(b.cmd_str(&["AUTH", "boss", "bosspw"]), b"+OK\r\n");
    assert_eq!(b.cmd_str(&["ACL", "WHOAMI"]), b"$4\r\nboss\r\n");
    assert_eq!(b.cmd_str(&["KEYS", "nomatch*"]), b"*0\r\n");
    assert!(proxy.unexpected_log_lines().is_empty());
}

/// Issue 15 item 8, acceptance 15.7's first half: a client that is not an
/// administrator cannot change the password respite logs in with, in any
/// form; an administrator can.
#[test]
fn credential_guard() {
    let redis = RedisServer::start();
    let (mut proxy, _dir) = proxy_with(&redis.addr(), &users_config());
    let mut direct = redis.conn();
    let mut c = proxy.conn();
    assert_eq!(c.cmd_str(&["AUTH", "defpw"]), b"+OK\r\n");
    let refused = |r: &[u8]| {
        r.starts_with(b"-NOPERM ") && escape(r).contains("only an administrator client may run it")
    };
    for args in [
        &["CONFIG", "SET", "requirepass", "x"][..],
        &["config", "set", "maxmemory", "0", "RequirePass", "x"],
        &["ACL", "SETUSER", "default", "off"],
        &["ACL", "SETUSER", "default", ">x"],
        &["ACL", "DELUSER", "someone", "default"],
        &["ACL", "LOAD"],
    ] {
        let r = c.cmd_str(args);
        assert!(refused(&r), "{args:?}: {}", escape(&r));
    }
    // Not respite's user or not its password: forwarded.
    assert_eq!(c.cmd_str(&["ACL", "SETUSER", "other", "on"]), b"+OK\r\n");
    assert_eq!(c.cmd_str(&["ACL", "DELUSER", "other"]), b":1\r\n");
    assert_eq!(c.cmd_str(&["CONFIG", "SET", "maxmemory", "0"]), b"+OK\r\n");
    // Inside MULTI: refused, and the transaction aborts as Redis aborts one
    // with a refused command.
    assert_eq!(c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert!(refused(&c.cmd_str(&["CONFIG", "SET", "requirepass", "x"])));
    assert_eq!(c.cmd_str(&["SET", "tx", "1"]), b"+QUEUED\r\n");
    assert_eq!(
        escape(&c.cmd_str(&["EXEC"])),
        escape(b"-EXECABORT Transaction discarded because of previous errors.\r\n")
    );
    assert_eq!(c.cmd_str(&["EXISTS", "tx"]), b":0\r\n");
    // Scripts cannot reach CONFIG or ACL at all (Redis's `noscript`).
    let r = c.cmd_str(&[
        "EVAL",
        "return redis.call('config','set','requirepass','x')",
        "0",
    ]);
    assert!(
        r.starts_with(b"-ERR This Redis command is not allowed from script"),
        "{}",
        escape(&r)
    );
    // Redis's password is unchanged: a direct client needs none.
    assert_eq!(
        direct.cmd_str(&["CONFIG", "GET", "requirepass"]),
        b"*2\r\n$11\r\nrequirepass\r\n$0\r\n\r\n"
    );
    assert_eq!(direct.cmd_str(&["PING"]), b"+PONG\r\n");

    // An administrator's command is forwarded.
    let mut b = proxy.conn();
    assert_eq!(b.cmd_str(&["AUTH", "boss", "bosspw"]), b"+OK\r\n");
    assert_eq!(
        b.cmd_str(&["CONFIG", "SET", "requirepass", "newpw"]),
        b"+OK\r\n"
    );
    let mut d2 = redis.conn();
    assert!(d2.cmd_str(&["PING"]).starts_with(b"-NOAUTH"));
    // Put it back (the proxy's connections may log refused handshakes meanwhile).
    proxy.allow_log("NOAUTH");
    proxy.allow_log("handshake");
    assert_eq!(d2.cmd_str(&["AUTH", "newpw"]), b"+OK\r\n");
    assert_eq!(
        d2.cmd_str(&["CONFIG", "SET", "requirepass", ""]),
        b"+OK\r\n"
    );
}

/// Without `[auth]`, every client is the default user and not an
/// administrator unless `auth.default_user_admin` says so.
#[test]
fn default_user_admin_setting() {
    let redis = RedisServer::start();
    let mut plain = Proxy::start(&redis);
    let mut c = plain.conn();
    let r = c.cmd_str(&["CONFIG", "SET", "requirepass", "x"]);
    assert!(r.starts_with(b"-NOPERM "), "{}", escape(&r));
    assert_eq!(c.cmd_str(&["ACL", "WHOAMI"]), b"$7\r\ndefault\r\n");
    let (mut admin, _dir) = proxy_with(&redis.addr(), "[auth]\ndefault_user_admin = true\n");
    let mut a = admin.conn();
    assert_eq!(a.cmd_str(&["ACL", "SETUSER", "default", "on"]), b"+OK\r\n");
    plain.assert_running();
    admin.assert_running();
}
