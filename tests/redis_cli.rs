//! Acceptance 6: `redis-cli` works against the proxy as against Redis —
//! commands as arguments (RESP2 and `-3`), commands piped on stdin, `-x`,
//! `--pipe` mass insertion — and inline commands work over a raw socket.
//!
//! Each redis-cli run is also made straight against Redis and the outputs
//! must match, besides the concrete expected output.

mod common;

use std::time::Duration;

use common::{assert_reply, encode_str, escape, run_with_timeout, Proxy, RawConn, RedisServer};

const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs redis-cli against `port`; returns (exit code, stdout, stderr).
fn cli(port: u16, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let port_s = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port_s];
    all.extend_from_slice(args);
    let out = run_with_timeout("redis-cli", &all, stdin, CLI_TIMEOUT);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the same redis-cli invocation against Redis and the proxy (each
/// after FLUSHALL on Redis), asserts identical output, returns it.
fn same_output(redis: &RedisServer, proxy: &Proxy, args: &[&str], stdin: &[u8]) -> String {
    let mut d = redis.conn();
    assert_reply(&d.cmd_str(&["FLUSHALL"]), b"+OK\r\n");
    let direct = cli(redis.port(), args, stdin);
    assert_reply(&d.cmd_str(&["FLUSHALL"]), b"+OK\r\n");
    let proxied = cli(proxy.port(), args, stdin);
    assert_eq!(
        proxied, direct,
        "redis-cli {args:?} differs (left: respite, right: redis)"
    );
    assert_eq!(direct.0, 0, "redis-cli {args:?} failed: {}", direct.2);
    proxied.1
}

/// Commands given as arguments, one redis-cli process each.
fn args_session(port: u16, resp3: bool) -> Vec<String> {
    let mut outs = Vec::new();
    let cmds: &[&[&str]] = &[
        &["PING"],
        &["SET", "foo", "bar baz"],
        &["GET", "foo"],
        &["INCR", "n"],
        &["INCRBYFLOAT", "n", "0.5"],
        &["RPUSH", "l", "a", "b", "c"],
        &["LRANGE", "l", "0", "-1"],
        &["HSET", "h", "f1", "v1", "f2", "v2"],
        &["HGETALL", "h"],
        &["ZADD", "z", "1.5", "m"],
        &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
        &["GET", "missing"],
        &["LPUSH", "foo", "x"],
        &["NOSUCHCOMMAND", "arg"],
    ];
    for cmd in cmds {
        let mut args: Vec<&str> = Vec::new();
        if resp3 {
            args.push("-3");
        }
        args.push("--no-raw");
        args.extend_from_slice(cmd);
        let (code, out, err) = cli(port, &args, b"");
        outs.push(format!("{cmd:?} -> [{code}] {out}{err}"));
    }
    outs
}

#[test]
fn redis_cli_commands_as_arguments() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    for resp3 in [false, true] {
        assert_reply(&redis.conn().cmd_str(&["FLUSHALL"]), b"+OK\r\n");
        let direct = args_session(redis.port(), resp3);
        assert_reply(&redis.conn().cmd_str(&["FLUSHALL"]), b"+OK\r\n");
        let proxied = args_session(proxy.port(), resp3);
        assert_eq!(
            proxied, direct,
            "redis-cli output differs (resp3={resp3}; left: respite, right: redis)"
        );
        assert!(proxied[0].ends_with("PONG\n"), "{}", proxied[0]);
        assert!(proxied[2].ends_with("\"bar baz\"\n"), "{}", proxied[2]);
        assert!(proxied[3].ends_with("(integer) 1\n"), "{}", proxied[3]);
        assert!(proxied[12].contains("WRONGTYPE"), "{}", proxied[12]);
        assert!(proxied[13].contains("unknown command"), "{}", proxied[13]);
    }
    // Raw output mode (the default when stdout is not a terminal).
    let out = same_output(&redis, &proxy, &["SET", "k", "v"], b"");
    assert_eq!(out, "OK\n");
    proxy.assert_running();
}

#[test]
fn redis_cli_reads_commands_from_stdin() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    let script = b"SET a 1\nINCR a\nGET a\nSET greeting \"hello world\"\nGET greeting\nRPUSH l x y\nLRANGE l 0 -1\nSELECT 2\nGET a\nSET a in-db-2\nGET a\n";
    let out = same_output(&redis, &proxy, &[], script);
    assert_eq!(
        out,
        "OK\n2\n2\nOK\nhello world\n2\nx\ny\nOK\n\nOK\nin-db-2\n"
    );

    // -x: the last argument comes from stdin.
    let out = same_output(&redis, &proxy, &["-x", "SET", "fromstdin"], b"piped\nvalue");
    assert_eq!(out, "OK\n");
    let mut c = proxy.conn();
    assert_reply(
        &c.cmd_str(&["GET", "fromstdin"]),
        b"$11\r\npiped\nvalue\r\n",
    );
    proxy.assert_running();
}

#[test]
fn inline_commands_over_raw_socket() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    let steps: &[(&[u8], &[u8])] = &[
        (b"PING\r\n", b"+PONG\r\n"),
        (b"SET a \"hello world\"\r\n", b"+OK\r\n"),
        (b"GET a\r\n", b"$11\r\nhello world\r\n"),
        (b"ping\n", b"+PONG\r\n"),
        (b"SET b 'single quoted'\r\n", b"+OK\r\n"),
        (b"GET b\r\n", b"$13\r\nsingle quoted\r\n"),
        (b"SET c \"esc\\x41\\n\"\r\n", b"+OK\r\n"),
        (b"GET c\r\n", b"$5\r\nescA\n\r\n"),
        (b"  EXISTS   a   b   nope  \r\n", b":2\r\n"),
        (
            b"ECHO\r\n",
            b"-ERR wrong number of arguments for 'echo' command\r\n",
        ),
        (
            b"INCR a\r\n",
            b"-ERR value is not an integer or out of range\r\n",
        ),
        // Inline and RESP mixed in one write.
        (b"DEL a\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n", b":1\r\n"),
    ];
    for port in [redis.port(), proxy.port()] {
        let mut c = RawConn::connect(port);
        for (input, want) in steps {
            c.send(input);
            let got = c.read_reply();
            assert!(
                got == *want,
                "port {port}: {}\n  got:  {}\n  want: {}",
                escape(input),
                escape(&got),
                escape(want)
            );
        }
        assert_reply(&c.read_reply(), b"$13\r\nsingle quoted\r\n");
        // An empty line is ignored: no reply for it.
        c.send(b"\r\nPING\r\n");
        assert_reply(&c.read_reply(), b"+PONG\r\n");
        c.expect_silence(Duration::from_millis(100));
        // A pipeline of inline commands in one write.
        c.send(b"SET p 1\r\nINCR p\r\nINCR p\r\nGET p\r\n");
        for want in [&b"+OK\r\n"[..], b":2\r\n", b":3\r\n", b"$1\r\n3\r\n"] {
            assert_reply(&c.read_reply(), want);
        }
        let mut d = redis.conn();
        assert_reply(&d.cmd_str(&["FLUSHALL"]), b"+OK\r\n");
    }
    proxy.assert_running();
}

#[test]
fn redis_cli_pipe_mode_10k_commands() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    let mut input = Vec::new();
    for i in 0..10_000 {
        input.extend_from_slice(&encode_str(&[
            "SET",
            &format!("pipe:{i}"),
            &format!("value-{i}"),
        ]));
    }
    let (code, out, err) = cli(proxy.port(), &["--pipe"], &input);
    assert_eq!(code, 0, "redis-cli --pipe failed: {out}{err}");
    assert!(
        out.contains("errors: 0, replies: 10000"),
        "unexpected --pipe summary: {out}{err}"
    );
    let mut c = proxy.conn();
    assert_reply(&c.cmd_str(&["DBSIZE"]), b":10000\r\n");
    assert_reply(&c.cmd_str(&["GET", "pipe:9999"]), b"$10\r\nvalue-9999\r\n");
    let mut d = redis.conn();
    assert_reply(&d.cmd_str(&["GET", "pipe:0"]), b"$7\r\nvalue-0\r\n");

    // With errors mixed in, the summary counts them the same way.
    let mut input = Vec::new();
    for i in 0..1000 {
        if i % 100 == 0 {
            input.extend_from_slice(&encode_str(&["LPUSH", "pipe:1", "x"]));
        } else {
            input.extend_from_slice(&encode_str(&["INCR", "pipe:counter"]));
        }
    }
    let (code, out, err) = cli(proxy.port(), &["--pipe"], &input);
    assert!(
        out.contains("errors: 10, replies: 1000"),
        "unexpected --pipe summary (exit {code}): {out}{err}"
    );
    assert_reply(&c.cmd_str(&["GET", "pipe:counter"]), b"$3\r\n990\r\n");
    proxy.assert_running();
}

/// The redis-cli expectations above hold against Redis itself.
#[test]
fn redis_cli_expectations_against_redis() {
    let redis = RedisServer::start();
    let outs = args_session(redis.port(), false);
    assert!(outs[0].ends_with("PONG\n"), "{}", outs[0]);
    assert!(outs[2].ends_with("\"bar baz\"\n"), "{}", outs[2]);
    assert!(outs[3].ends_with("(integer) 1\n"), "{}", outs[3]);
    assert!(outs[12].contains("WRONGTYPE"), "{}", outs[12]);
    assert!(outs[13].contains("unknown command"), "{}", outs[13]);
    assert_reply(&redis.conn().cmd_str(&["FLUSHALL"]), b"+OK\r\n");
    let (code, out, err) = cli(
        redis.port(),
        &[],
        b"SET a 1\nINCR a\nGET a\nSET greeting \"hello world\"\nGET greeting\nRPUSH l x y\nLRANGE l 0 -1\nSELECT 2\nGET a\nSET a in-db-2\nGET a\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "OK\n2\n2\nOK\nhello world\n2\nx\ny\nOK\n\nOK\nin-db-2\n"
    );
    let mut input = Vec::new();
    for i in 0..10_000 {
        input.extend_from_slice(&encode_str(&["SET", &format!("pipe:{i}"), "v"]));
    }
    let (code, out, err) = cli(redis.port(), &["--pipe"], &input);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("errors: 0, replies: 10000"), "{out}");
    let mut c = redis.conn();
    c.send(b"SET a \"hello world\"\r\n");
    assert_reply(&c.read_reply(), b"+OK\r\n");
}
