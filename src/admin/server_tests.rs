//! In-process tests of the admin server over real sockets: one server per test
//! on 127.0.0.1:0, raw HTTP bytes in, parsed replies out. The routes
//! themselves are tested without a socket in `mod.rs`; these test what the
//! server adds: framing, keep-alive, limits, eviction and shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::{serve, Access, AdminLimits, AdminState, PromWriter};

/// Long enough for a loaded CI machine, short enough that a hang fails fast.
const WAIT: Duration = Duration::from_secs(5);

struct TestState {
    ready: AtomicBool,
}

impl AdminState for TestState {
    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
    fn render_metrics(&self, out: &mut String) {
        PromWriter::new(out).counter("test_requests_total", "Requests.", 7);
    }
}

const METRICS: &str =
    "# HELP test_requests_total Requests.\n# TYPE test_requests_total counter\ntest_requests_total 7\n";

struct Server {
    addr: SocketAddr,
    state: Arc<TestState>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn limits() -> AdminLimits {
    AdminLimits::from_config(&crate::config::Config::default().admin_http)
}

async fn start(limits: AdminLimits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let state = Arc::new(TestState {
        ready: AtomicBool::new(false),
    });
    let (shutdown, rx) = watch::channel(false);
    let access = Access::new(None, &[], addr);
    let task = tokio::spawn(serve(listener, state.clone(), access, rx, limits));
    Server {
        addr,
        state,
        shutdown,
        task,
    }
}

async fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(addr).await.expect("connect"))
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn body(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }
}

/// Reads exactly one response, so the next one on the same connection
/// starts where this stops. `head` requests carry no body.
async fn read_reply(conn: &mut BufReader<TcpStream>, head: bool) -> Reply {
    timeout(WAIT, async {
        let mut line = String::new();
        conn.read_line(&mut line).await.expect("status line");
        let mut parts = line.trim_end().splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        assert!(version.starts_with("HTTP/1."), "status line {line:?}");
        let status = parts.next().and_then(|s| s.parse().ok()).expect("status");
        let mut headers = Vec::new();
        loop {
            line.clear();
            conn.read_line(&mut line).await.expect("header line");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').expect("header colon");
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = reply
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .expect("content-length");
        if !head {
            reply.body = vec![0; len];
            conn.read_exact(&mut reply.body).await.expect("body");
        }
        reply
    })
    .await
    .expect("reply in time")
}

async fn request(conn: &mut BufReader<TcpStream>, raw: &str) -> Reply {
    conn.get_mut()
        .write_all(raw.as_bytes())
        .await
        .expect("write");
    read_reply(conn, raw.starts_with("HEAD ")).await
}

/// Asserts the server closes the connection with nothing more to say.
async fn assert_closed(conn: &mut BufReader<TcpStream>) {
    let mut rest = Vec::new();
    let read = timeout(WAIT, conn.read_to_end(&mut rest))
        .await
        .expect("server should close the connection");
    // A reset also means closed; only extra bytes are a failure.
    if read.is_ok() {
        assert_eq!(String::from_utf8_lossy(&rest), "");
    }
}

#[tokio::test]
async fn keep_alive_serves_sequential_requests_on_one_connection() {
    let server = start(limits()).await;
    let mut conn = connect(server.addr).await;

    let health = request(&mut conn, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!((health.status, health.body()), (200, "ok\n"));
    assert_eq!(health.header("connection"), None);

    let metrics = request(
        &mut conn,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(metrics.body(), METRICS);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let server = start(limits()).await;
    let mut conn = connect(server.addr).await;
    conn.get_mut()
        .write_all(
            b"GET /ready HTTP/1.1\r\nHost: localhost\r\n\r\nGET /nope HTTP/1.1\r\nHost: localhost\r\n\r\nGET /health HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .await
        .expect("write");
    assert_eq!(read_reply(&mut conn, false).await.status, 503);
    assert_eq!(read_reply(&mut conn, false).await.status, 404);
    assert_eq!(read_reply(&mut conn, false).await.body(), "ok\n");
}

#[tokio::test]
async fn readiness_flips_with_state() {
    let server = start(limits()).await;
    let mut conn = connect(server.addr).await;
    let before = request(&mut conn, "GET /ready HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!((before.status, before.body()), (503, "not ready\n"));
    server.state.ready.store(true, Ordering::SeqCst);
    let after = request(&mut conn, "GET /ready HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!((after.status, after.body()), (200, "ready\n"));
    server.state.ready.store(false, Ordering::SeqCst);
    assert_eq!(
        request(&mut conn, "GET /ready HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .status,
        503
    );
}

#[tokio::test]
async fn head_announces_get_length_without_sending_a_body() {
    let server = start(limits()).await;
    let mut conn = connect(server.addr).await;
    let head = request(
        &mut conn,
        "HEAD /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(METRICS.len().to_string().as_str())
    );
    // Any stray body bytes would be read as this reply's status line.
    let next = request(&mut conn, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(next.body(), "ok\n");
}

#[tokio::test]
async fn wrong_method_gets_405_with_allow() {
    let server = start(limits()).await;
    let mut conn = connect(server.addr).await;
    let reply = request(
        &mut conn,
        "DELETE /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn http10_closes_unless_keep_alive_is_asked_for() {
    let server = start(limits()).await;

    let mut conn = connect(server.addr).await;
    let reply = request(&mut conn, "GET /health HTTP/1.0\r\n\r\n").await;
    assert_eq!((reply.status, reply.body()), (200, "ok\n"));
    assert_ne!(reply.header("connection"), Some("keep-alive"));
    assert_closed(&mut conn).await;

    let mut conn = connect(server.addr).await;
    let reply = request(
        &mut conn,
        "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    )
    .await;
    assert_eq!(reply.header("connection"), Some("keep-alive"));
    let again = request(&mut conn, "GET /health HTTP/1.0\r\n\r\n").await;
    assert_eq!(again.body(), "ok\n");
    assert_closed(&mut conn).await;
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let server = start(limits()).await;
    let mut conn = connect(server.addr).await;
    let reply = request(
        &mut conn,
        "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        (reply.status, reply.header("connection")),
        (200, Some("close"))
    );
    assert_closed(&mut conn).await;
}

#[tokio::test]
async fn a_request_body_is_skipped_and_the_connection_goes_on() {
    let server = start(limits()).await;
    let mut conn = connect(server.addr).await;
    let reply = request(
        &mut conn,
        "POST /health HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(reply.status, 405);
    let next = request(&mut conn, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!((next.status, next.body()), (200, "ok\n"));
}

#[tokio::test]
async fn oversized_head_gets_431_and_close() {
    let server = start(limits()).await;
    let mut conn = connect(server.addr).await;
    let raw = format!(
        "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(9000)
    );
    conn.get_mut()
        .write_all(raw.as_bytes())
        .await
        .expect("write");
    let reply = read_reply(&mut conn, false).await;
    assert_eq!(reply.status, 431);
    assert_closed(&mut conn).await;
}

#[tokio::test]
async fn the_header_limit_is_configurable() {
    let server = start(AdminLimits {
        max_header_bytes: 1024,
        ..limits()
    })
    .await;
    let head = |pad: usize| {
        format!(
            "GET /health HTTP/1.1\r\nHost: localhost\r\nX: {}\r\n\r\n",
            "a".repeat(pad)
        )
    };
    let mut conn = connect(server.addr).await;
    assert_eq!(request(&mut conn, &head(900)).await.status, 200);
    let mut conn = connect(server.addr).await;
    conn.get_mut()
        .write_all(head(1100).as_bytes())
        .await
        .expect("write");
    assert_eq!(read_reply(&mut conn, false).await.status, 431);
    assert_closed(&mut conn).await;
}

#[tokio::test]
async fn garbage_gets_400_and_the_server_keeps_serving() {
    let server = start(limits()).await;
    for garbage in [
        &b"\x00\x01\x02garbage\r\n\r\n"[..],
        b"*1\r\n$4\r\nPING\r\n\r\n",
        b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\n\r\n",
    ] {
        let mut conn = connect(server.addr).await;
        conn.get_mut().write_all(garbage).await.expect("write");
        let reply = read_reply(&mut conn, false).await;
        assert_eq!(reply.status, 400, "{garbage:?}");
        assert_closed(&mut conn).await;
    }
    let mut conn = connect(server.addr).await;
    assert_eq!(
        request(&mut conn, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn slow_head_is_closed_after_the_timeout() {
    let server = start(AdminLimits {
        header_timeout: Duration::from_millis(200),
        ..limits()
    })
    .await;
    let mut conn = connect(server.addr).await;
    conn.get_mut()
        .write_all(b"GET /health HTTP/1.1\r\n")
        .await
        .expect("write");
    assert_closed(&mut conn).await;
}

#[tokio::test]
async fn idle_keep_alive_is_closed_after_the_timeout() {
    let server = start(AdminLimits {
        header_timeout: Duration::from_millis(200),
        ..limits()
    })
    .await;
    let mut conn = connect(server.addr).await;
    let reply = request(&mut conn, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(reply.status, 200);
    assert_closed(&mut conn).await;
}

/// Whether the server closed `conn` (EOF or reset) within `wait`.
async fn closed_within(conn: &mut BufReader<TcpStream>, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        timeout(wait, conn.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn a_new_connection_past_the_cap_closes_the_idlest() {
    // A header timeout far beyond WAIT, so only the cap can close anything.
    let server = start(AdminLimits {
        max_connections: 2,
        header_timeout: Duration::from_secs(60),
        ..limits()
    })
    .await;
    // `silent` never sends anything; `keep` is a keep-alive connection that
    // has just been served, so `silent` has waited longer for a request.
    let mut silent = connect(server.addr).await;
    let mut keep = connect(server.addr).await;
    let health = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_eq!(request(&mut keep, health).await.status, 200);

    let mut probe = connect(server.addr).await;
    assert_eq!(request(&mut probe, health).await.body(), "ok\n");
    assert!(
        closed_within(&mut silent, WAIT).await,
        "the idlest stays open"
    );
    // The keep-alive connection was not the idlest and still works.
    assert_eq!(request(&mut keep, health).await.status, 200);

    // Now `keep` was served last, so the next newcomer closes `probe`.
    let mut third = connect(server.addr).await;
    assert_eq!(request(&mut third, health).await.status, 200);
    assert!(closed_within(&mut probe, WAIT).await, "probe stays open");
    assert_eq!(request(&mut keep, health).await.status, 200);
}

#[tokio::test]
async fn probes_are_answered_under_a_flood_of_idle_connections() {
    let server = start(AdminLimits {
        max_connections: 8,
        header_timeout: Duration::from_secs(60),
        ..limits()
    })
    .await;
    let addr = server.addr;
    // 40 idle connections, each reopened as soon as the server closes it.
    let flood = tokio::spawn(async move {
        let mut idle: Vec<TcpStream> = Vec::new();
        loop {
            for _ in 0..8 {
                if let Ok(conn) = TcpStream::connect(addr).await {
                    idle.push(conn);
                }
            }
            if idle.len() > 40 {
                idle.drain(..8);
            }
            tokio::task::yield_now().await;
        }
    });
    for i in 0..50 {
        let mut probe = connect(addr).await;
        let reply = request(
            &mut probe,
            "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .await;
        assert_eq!((reply.status, reply.body()), (200, "ok\n"), "probe {i}");
    }
    flood.abort();
}

#[tokio::test]
async fn shutdown_stops_accepting_and_closes_idle_connections() {
    // A header timeout far beyond WAIT, so only shutdown can close `idle`.
    let server = start(AdminLimits {
        header_timeout: Duration::from_secs(60),
        ..limits()
    })
    .await;
    let mut idle = connect(server.addr).await;
    assert_eq!(
        request(&mut idle, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .status,
        200
    );
    let mut silent = connect(server.addr).await;

    server.shutdown.send(true).expect("server is running");
    timeout(WAIT, server.task)
        .await
        .expect("serve returns after shutdown")
        .expect("serve task did not panic");
    assert_closed(&mut idle).await;
    assert_closed(&mut silent).await;
    assert!(TcpStream::connect(server.addr).await.is_err());
}
