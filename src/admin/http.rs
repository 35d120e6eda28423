//! The admin endpoint's HTTP/1.1 server: accept loop, connection cap,
//! bounded request heads, keep-alive and graceful shutdown.
//!
//! Hand-written on tokio because the surface is three bodiless GET routes;
//! it parses only what it must (request line, `Connection`, and whether a
//! body follows) and closes the connection on anything it does not handle.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::timeout;

use super::{respond, AdminState, Response, ALLOWED_METHODS, TEXT_PLAIN};

/// Largest request head (request line + headers + blank line) accepted.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 8 * 1024;
/// Time allowed to receive one request head, idle keep-alive time included.
pub const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed to write one response to a client that is not reading.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin connections served at once; more are closed on accept.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 64;

/// How long, and how many bytes, to drain before closing (see `close_gracefully`).
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);
const LINGER_MAX_BYTES: usize = 64 * 1024;
/// Pause after a failed accept (usually EMFILE): retrying at once would spin
/// until some descriptor is freed.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Bounds on what admin clients can make the proxy hold. Every field bounds a
/// resource a client controls, so none is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminLimits {
    /// Larger heads get 431 and the connection is closed.
    pub max_head_bytes: usize,
    /// A head not fully received in this time closes the connection without
    /// a reply; this also ends idle keep-alive connections.
    pub head_timeout: Duration,
    /// A response not fully written in this time closes the connection.
    pub write_timeout: Duration,
    /// Concurrent connections; extra ones are closed as soon as accepted.
    pub max_connections: u32,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Serves the admin endpoint on `listener` with [`AdminLimits::default`].
///
/// See [`serve_with_limits`].
pub async fn serve(
    listener: TcpListener,
    state: Arc<dyn AdminState>,
    shutdown: watch::Receiver<bool>,
) {
    serve_with_limits(listener, state, shutdown, AdminLimits::default()).await;
}

/// Serves the admin endpoint until `shutdown` becomes `true` (or its sender
/// is dropped, since then nobody could ever stop it).
///
/// Each connection runs in its own task. On shutdown the listener is closed
/// at once, connections waiting for a request are closed, and this returns
/// when every connection task has finished (each is bounded by the limits).
pub async fn serve_with_limits(
    listener: TcpListener,
    state: Arc<dyn AdminState>,
    mut shutdown: watch::Receiver<bool>,
    limits: AdminLimits,
) {
    let max = usize::try_from(limits.max_connections)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    loop {
        let accepted = tokio::select! {
            // Checked first so that no connection is accepted after shutdown.
            biased;
            () = shutdown_signalled(&mut shutdown) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(%err, "admin: accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            // Fail fast rather than queue: a probe that gets no answer is
            // retried by its orchestrator anyway.
            tracing::debug!(%peer, "admin: connection limit reached, closing");
            continue;
        };
        let state = Arc::clone(&state);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(err) = handle_connection(stream, state, shutdown, limits).await {
                tracing::debug!(%peer, %err, "admin: connection error");
            }
            drop(permit);
        });
    }
    // Refuse new connections now rather than when the drain below finishes.
    drop(listener);
    // Every task holds a permit until it ends, so getting all of them back
    // means every connection is done.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}

/// Resolves once shutdown is requested or can no longer be requested.
/// Cancel-safe: it only reads the channel.
async fn shutdown_signalled(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// Serves sequential requests on one connection until either side closes it.
async fn handle_connection(
    mut stream: TcpStream,
    state: Arc<dyn AdminState>,
    mut shutdown: watch::Receiver<bool>,
    limits: AdminLimits,
) -> io::Result<()> {
    // Holds the head being read plus any pipelined bytes after it.
    let mut buf = Vec::with_capacity(1024);
    loop {
        let read = tokio::select! {
            biased;
            // Between requests there is nothing to finish, so close at once.
            () = shutdown_signalled(&mut shutdown) => return Ok(()),
            read = timeout(
                limits.head_timeout,
                read_head(&mut stream, &mut buf, limits.max_head_bytes),
            ) => read,
        };
        let head_len = match read {
            // Too slow, or an idle keep-alive connection: nobody is waiting
            // for an answer, so just close.
            Err(_elapsed) => return Ok(()),
            Ok(Err(err)) => return Err(err),
            Ok(Ok(HeadRead::Eof)) => return Ok(()),
            Ok(Ok(HeadRead::TooLarge)) => {
                let response = error_response(431, "request header fields too large\n");
                return reply_and_close(stream, &response, limits).await;
            }
            Ok(Ok(HeadRead::Complete(len))) => len,
        };
        let Ok(request) = parse_head(&buf[..head_len]) else {
            let response = error_response(400, "bad request\n");
            return reply_and_close(stream, &response, limits).await;
        };
        // A HEAD reply must announce the GET body's length, so route it as
        // GET and leave the body out when writing.
        let head_only = request.method == "HEAD";
        let method = if head_only { "GET" } else { request.method };
        let response = respond(&*state, method, request.target);
        let connection = match (request.keep_alive, request.http10) {
            (false, _) => Connection::Close,
            (true, true) => Connection::KeepAlive,
            (true, false) => Connection::Persistent,
        };
        let bytes = encode_response(&response, head_only, connection);
        match timeout(limits.write_timeout, stream.write_all(&bytes)).await {
            Err(_elapsed) => return Ok(()),
            Ok(result) => result?,
        }
        if !request.keep_alive {
            close_gracefully(stream).await;
            return Ok(());
        }
        buf.drain(..head_len);
    }
}

async fn reply_and_close(
    mut stream: TcpStream,
    response: &Response,
    limits: AdminLimits,
) -> io::Result<()> {
    let bytes = encode_response(response, false, Connection::Close);
    match timeout(limits.write_timeout, stream.write_all(&bytes)).await {
        Err(_elapsed) => return Ok(()),
        Ok(result) => result?,
    }
    close_gracefully(stream).await;
    Ok(())
}

/// Closing a socket that still has unread input makes the kernel send RST,
/// and an RST can destroy the response before the client reads it (the
/// 431 and request-with-body cases leave input unread). So half-close first,
/// then discard input for a bounded time before dropping the socket.
async fn close_gracefully(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_MAX_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = timeout(LINGER_TIMEOUT, drain).await;
}

#[derive(Debug, PartialEq, Eq)]
enum HeadRead {
    /// `buf[..len]` is a complete head, terminator included.
    Complete(usize),
    TooLarge,
    /// The peer closed before sending a complete head.
    Eof,
}

/// Reads into `buf` until it holds a complete head. `buf` never grows past
/// `max`, so a client cannot make it allocate more than that.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>, max: usize) -> io::Result<HeadRead> {
    let mut chunk = [0u8; 2048];
    loop {
        // RFC 9112 section 2.2: ignore empty lines before a request line.
        let blank = buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        buf.drain(..blank);
        if let Some(end) = find_head_end(buf) {
            return Ok(HeadRead::Complete(end));
        }
        if buf.len() >= max {
            return Ok(HeadRead::TooLarge);
        }
        let want = (max - buf.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Ok(HeadRead::Eof);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Length of the head up to and including the empty line that ends it.
/// Accepts bare LF line ends as well as CRLF, as RFC 9112 allows.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            let line = &buf[line_start..i];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() && line_start > 0 {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

/// The parts of a request the server acts on.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a str,
    /// Path and query, from origin-form or absolute-form.
    target: &'a str,
    http10: bool,
    keep_alive: bool,
}

/// The head is not valid HTTP/1.x; answered with 400 and a close.
#[derive(Debug, PartialEq, Eq)]
struct BadRequest;

fn parse_head(head: &[u8]) -> Result<Request<'_>, BadRequest> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let request_line = lines.next().ok_or(BadRequest)?;
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadRequest);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(BadRequest);
    }
    if target.is_empty() || !target.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(BadRequest);
    }
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => return Err(BadRequest),
    };

    let mut close = false;
    let mut keep_alive_token = false;
    let mut has_body = false;
    for line in lines.take_while(|line| !line.is_empty()) {
        // Obsolete line folding is rejected, as RFC 9112 section 5.2 permits.
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            return Err(BadRequest);
        }
        let colon = line.iter().position(|&b| b == b':').ok_or(BadRequest)?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(BadRequest);
        }
        if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive_token |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return Err(BadRequest);
            }
            has_body |= value.iter().any(|&b| b != b'0');
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            has_body = true;
        }
    }

    let method = std::str::from_utf8(method).map_err(|_| BadRequest)?;
    let target = std::str::from_utf8(target).map_err(|_| BadRequest)?;
    let target = request_path(target).ok_or(BadRequest)?;
    Ok(Request {
        method,
        target,
        http10,
        // The server never reads bodies, so after one the stream position is
        // unknown and the connection cannot carry another request.
        keep_alive: !close && !has_body && (!http10 || keep_alive_token),
    })
}

/// The path-and-query of a request target. Absolute-form must be accepted by
/// servers (RFC 9112 section 3.2.2) even though only proxies send it.
fn request_path(target: &str) -> Option<&str> {
    if target.starts_with('/') || target == "*" {
        return Some(target);
    }
    let (scheme, rest) = target.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => Some(&rest[i..]),
        _ => Some("/"),
    }
}

/// Token characters (RFC 9110 section 5.6.2), used by methods and header names.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What the `Connection` header of a response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connection {
    /// HTTP/1.1 default: persistent, no header needed.
    Persistent,
    /// HTTP/1.0 client asked for keep-alive and must be told it got it.
    KeepAlive,
    Close,
}

fn error_response(status: u16, body: &str) -> Response {
    Response {
        status,
        content_type: TEXT_PLAIN,
        body: body.as_bytes().to_vec(),
    }
}

fn encode_response(response: &Response, head_only: bool, connection: Connection) -> Vec<u8> {
    use std::fmt::Write;

    let mut head = String::with_capacity(192);
    // Writing into a String cannot fail.
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        response.status,
        reason_phrase(response.status),
        response.content_type,
        response.body.len(),
    );
    if response.status == 405 {
        let _ = write!(head, "Allow: {ALLOWED_METHODS}\r\n");
    }
    // Probes and scrapes must always see the current state.
    head.push_str("Cache-Control: no-store\r\n");
    match connection {
        Connection::Persistent => {}
        Connection::KeepAlive => head.push_str("Connection: keep-alive\r\n"),
        Connection::Close => head.push_str("Connection: close\r\n"),
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&response.body);
    }
    bytes
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        // The reason phrase is optional; clients must not rely on it.
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(head: &str) -> Result<Request<'_>, BadRequest> {
        parse_head(head.as_bytes())
    }

    #[test]
    fn head_end_accepts_crlf_and_bare_lf() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nrest"), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\n"), Some(24));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
        assert_eq!(find_head_end(b""), None);
    }

    #[test]
    fn parses_http11_request_as_persistent() {
        let request = parse("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n");
        assert_eq!(
            request,
            Ok(Request {
                method: "GET",
                target: "/metrics?x=1",
                http10: false,
                keep_alive: true,
            })
        );
    }

    #[test]
    fn connection_header_decides_persistence() {
        let keep = |head| parse(head).map(|r| r.keep_alive);
        assert_eq!(
            keep("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"),
            Ok(false)
        );
        assert_eq!(
            keep("GET / HTTP/1.1\r\nconnection:  Upgrade, CLOSE \r\n\r\n"),
            Ok(false)
        );
        assert_eq!(keep("GET / HTTP/1.0\r\n\r\n"), Ok(false));
        assert_eq!(
            keep("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
            Ok(true)
        );
        assert_eq!(
            keep("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"),
            Ok(false)
        );
    }

    #[test]
    fn a_body_ends_the_connection() {
        let keep = |head| parse(head).map(|r| r.keep_alive);
        assert_eq!(
            keep("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Ok(false)
        );
        assert_eq!(
            keep("POST / HTTP/1.1\r\nContent-Length: 000\r\n\r\n"),
            Ok(true)
        );
        assert_eq!(
            keep("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(false)
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"),
            Err(BadRequest)
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n"),
            Err(BadRequest)
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n")
                .map(|r| r.keep_alive),
            Ok(false)
        );
    }

    #[test]
    fn absolute_form_targets_become_paths() {
        let target = |head| parse(head).map(|r| r.target);
        assert_eq!(
            target("GET http://h:9/ready?x HTTP/1.1\r\n\r\n"),
            Ok("/ready?x")
        );
        assert_eq!(target("GET HTTPS://h HTTP/1.1\r\n\r\n"), Ok("/"));
        assert_eq!(target("GET http://h?q=/health HTTP/1.1\r\n\r\n"), Ok("/"));
        assert_eq!(target("OPTIONS * HTTP/1.1\r\n\r\n"), Ok("*"));
        assert_eq!(
            target("GET ftp://h/ready HTTP/1.1\r\n\r\n"),
            Err(BadRequest)
        );
        assert_eq!(target("GET health HTTP/1.1\r\n\r\n"), Err(BadRequest));
    }

    #[test]
    fn malformed_heads_are_rejected() {
        for head in [
            "\r\n\r\n",
            "GET\r\n\r\n",
            "GET /\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1 extra\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET / http/1.1\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
            "GET /\x7f HTTP/1.1\r\n\r\n",
            "GET /\u{e9} HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            "GET / HTTP/1.1\r\n: empty-name\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        ] {
            assert_eq!(parse(head), Err(BadRequest), "{head:?}");
        }
        assert_eq!(parse_head(b"GET /\xff HTTP/1.1\r\n\r\n"), Err(BadRequest));
    }

    #[test]
    fn non_utf8_header_values_are_ignored() {
        assert!(parse_head(b"GET / HTTP/1.1\r\nX-Junk: \xff\xfe\r\n\r\n").is_ok());
    }

    #[test]
    fn encodes_status_line_length_and_connection() {
        let response = error_response(405, "method not allowed\n");
        let bytes = encode_response(&response, false, Connection::Close);
        assert_eq!(
            String::from_utf8(bytes).ok(),
            Some(
                "HTTP/1.1 405 Method Not Allowed\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: 19\r\n\
                 Allow: GET, HEAD\r\n\
                 Cache-Control: no-store\r\n\
                 Connection: close\r\n\r\n\
                 method not allowed\n"
                    .to_string()
            )
        );
        let head = encode_response(&error_response(200, "ok\n"), true, Connection::KeepAlive);
        assert_eq!(
            String::from_utf8(head).ok(),
            Some(
                "HTTP/1.1 200 OK\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: 3\r\n\
                 Cache-Control: no-store\r\n\
                 Connection: keep-alive\r\n\r\n"
                    .to_string()
            )
        );
    }

    fn http_ish() -> impl Strategy<Value = Vec<u8>> {
        let fragments: Vec<&[u8]> = vec![
            b"GET",
            b"HEAD",
            b" ",
            b"/health",
            b"/ready?",
            b"http://",
            b"HTTP/1.1",
            b"HTTP/1.0",
            b"\r\n",
            b"\n",
            b"\r",
            b":",
            b",",
            b"Connection",
            b"close",
            b"keep-alive",
            b"Content-Length",
            b"5",
            b"\t",
            b"\x00",
            b"\xff",
            b"\xc3\xa9",
            b"*",
        ];
        prop::collection::vec(prop::sample::select(fragments), 0..40)
            .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_only_yields_valid_requests(
            bytes in prop_oneof![prop::collection::vec(any::<u8>(), 0..256), http_ish()]
        ) {
            let _ = find_head_end(&bytes);
            if let Ok(request) = parse_head(&bytes) {
                prop_assert!(!request.method.is_empty());
                prop_assert!(request.method.bytes().all(is_tchar));
                prop_assert!(request.target.starts_with('/') || request.target == "*");
            }
        }
    }
}
