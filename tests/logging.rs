//! Log output (issue 22): plain text without colour codes when stderr is not
//! a terminal (`docker logs`, a file, a pipe), colour only on a terminal, and
//! `log_format = "json"` giving one JSON object per line.

mod common;

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{assert_reply, Proxy, RedisServer};

const ESC: char = '\x1b';

/// Arguments for a proxy in front of `redis` logging at `info`, so start-up
/// and shutdown each write a line.
fn info_args(redis: &RedisServer, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--upstream",
        &redis.addr(),
        "--admin",
        "off",
        "--workers",
        "1",
        "--log-level",
        "info",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Waits until the proxy's log contains `needle`, or fails with the log.
fn wait_for_log(proxy: &Proxy, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = proxy.log();
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log within 10 s:\n{log}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the proxy through a request and a graceful shutdown; its whole log.
fn run_and_stop(mut proxy: Proxy) -> String {
    wait_for_log(&proxy, "respite listening");
    let mut conn = proxy.conn();
    assert_reply(&conn.cmd_str(&["SET", "log:k", "v"]), b"+OK\r\n");
    drop(conn);
    proxy.signal(libc::SIGTERM);
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("respite exits on SIGTERM");
    assert!(status.success(), "exit status {status}");
    wait_for_log(&proxy, "shutting down")
}

/// Parses every line as a JSON object with the fields tracing-subscriber's
/// JSON format writes; returns the messages in order.
fn json_messages(log: &str) -> Vec<String> {
    let mut messages = Vec::new();
    for line in log.lines().map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line:?}\n{log}"));
        let obj = value
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {line:?}"));
        for key in ["timestamp", "level", "target", "fields"] {
            assert!(obj.contains_key(key), "no {key:?} in {line:?}");
        }
        let message = obj["fields"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no fields.message in {line:?}"));
        messages.push(message.to_string());
    }
    messages
}

#[test]
fn text_logs_off_a_terminal_have_no_escape_codes() {
    let redis = RedisServer::start();
    let log = run_and_stop(Proxy::start_args(info_args(&redis, &[])));
    assert!(log.contains("INFO"), "{log}");
    assert!(
        !log.contains(ESC),
        "escape codes in a non-terminal log:\n{log:?}"
    );
    // Nor does the text format look like JSON by accident.
    assert!(!log.trim_start().starts_with('{'), "{log}");
}

#[test]
fn json_format_from_the_flag_is_one_object_per_line() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_args(info_args(&redis, &["--log-format", "json"]));
    let log = run_and_stop(proxy);
    assert!(!log.contains(ESC), "{log:?}");
    let messages = json_messages(&log);
    assert!(
        messages.iter().any(|m| m == "respite listening"),
        "{messages:?}"
    );
    assert_eq!(
        messages.last().map(String::as_str),
        Some("shutting down"),
        "{messages:?}"
    );
}

#[test]
fn json_format_from_the_environment() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_env(
        info_args(&redis, &[]),
        vec![("RESPITE_LOG_FORMAT".into(), "json".into())],
    );
    let log = run_and_stop(proxy);
    let messages = json_messages(&log);
    assert!(
        messages.iter().any(|m| m == "respite listening"),
        "{messages:?}"
    );
}

/// Runs respite under `script`, which gives it a pseudo-terminal as stdin,
/// stdout and stderr, and returns what it wrote there. The listen address is
/// one this machine does not have (TEST-NET-1), so respite logs an error and
/// exits right after setting up logging.
fn under_a_terminal(extra: &str, env: &[(&str, &str)]) -> String {
    let bin = env!("CARGO_BIN_EXE_respite");
    assert!(!bin.contains('\''), "unquotable path {bin}");
    let cmd = format!("'{bin}' --listen 192.0.2.1:1 --admin off --workers 1 {extra}");
    let mut command = Command::new("script");
    command.args(["-q", "-e", "-c", &cmd, "/dev/null"]);
    command.env_remove("NO_COLOR");
    for var in ["RESPITE_LOG_FORMAT", "RESPITE_LOG_LEVEL", "RESPITE_LISTEN"] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let out = output_within(command, Duration::from_secs(20));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("cannot listen"),
        "respite did not log its listen error under script (status {:?}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Runs `command` to completion (killed after `timeout`) with its output
/// piped; the output is a few lines, well under a pipe's buffer.
fn output_within(mut command: Command, timeout: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script(1) from util-linux");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for script") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("script(1) running respite did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    if let Some(mut o) = child.stdout.take() {
        o.read_to_end(&mut stdout).expect("read stdout");
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_end(&mut stderr).expect("read stderr");
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

#[test]
fn text_logs_on_a_terminal_are_coloured_unless_no_color() {
    // The positive case: the check above can tell colour from none.
    let coloured = under_a_terminal("", &[]);
    assert!(
        coloured.contains(ESC),
        "no colour on a terminal:\n{coloured:?}"
    );

    let plain = under_a_terminal("", &[("NO_COLOR", "1")]);
    assert!(!plain.contains(ESC), "colour despite NO_COLOR:\n{plain:?}");

    // With a compression secret, so that the only line is the failure.
    let json = under_a_terminal(
        "--log-format json",
        &[(
            "RESPITE_COMPRESSION_SECRET",
            "a-test-secret-of-32-bytes-length",
        )],
    );
    assert!(!json.contains(ESC), "colour in JSON:\n{json:?}");
    let messages = json_messages(&json);
    assert_eq!(messages, ["cannot listen"], "{json}");
}
