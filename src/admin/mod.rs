//! Admin HTTP endpoint: `/health`, `/ready`, `/metrics` and `/hotkeys` for probes and
//! Prometheus, kept apart from the Redis data path.
//!
//! Three pieces, each testable on its own:
//!
//! - [`respond`] is the whole router as a pure function of (state, access
//!   rules, request head), so every route, the `Host` check and the token
//!   check are tested without a socket.
//! - [`serve`] (in `http.rs`) runs hyper's HTTP/1.1 connection on each
//!   accepted socket, bounds the request head and the number of connections,
//!   and calls [`respond`]. It knows nothing about the routes.
//! - [`PromWriter`] (in `prom.rs`) writes the Prometheus text format; the rest
//!   of the proxy renders its metrics through it from
//!   [`AdminState::render_metrics`].

mod http;
mod prom;
pub mod proxy;
#[cfg(test)]
mod server_tests;

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::http::uri::Authority;
use hyper::{Method, Response, StatusCode, Version};

pub use http::{serve, AdminLimits};
pub use prom::{Histogram, PromWriter};

/// What the admin endpoint needs from the running proxy.
///
/// Both methods are called on the admin connection's task, so they must be
/// cheap and must not block on I/O: read atomics or snapshot under a short
/// lock, never await anything.
pub trait AdminState: Send + Sync + 'static {
    /// Whether the proxy should receive traffic now (listener bound, upstream
    /// reachable). Liveness (`/health`) deliberately does not consult this: a
    /// proxy waiting for its upstream is alive and must not be restarted.
    fn ready(&self) -> bool;

    /// Appends every metric in Prometheus text format (see [`PromWriter`]).
    /// It must never name a key: anyone who can reach the port reads it.
    fn render_metrics(&self, out: &mut String);

    /// Appends the hot keys as JSON (`/hotkeys`); false when there are none
    /// to give (statistics disabled), which answers 404.
    fn render_hotkeys(&self, _out: &mut String) -> bool {
        false
    }
}

/// Content type of `/hotkeys`.
pub const JSON: &str = "application/json";

/// Content type of plain-text replies.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// Content type Prometheus expects for text exposition format 0.0.4.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Value of the `Allow` header sent with every 405 reply.
pub const ALLOWED_METHODS: &str = "GET, HEAD";

/// Value of the `WWW-Authenticate` header of a 401 reply (RFC 6750).
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"respite\"";

/// Who may ask what: the token of the routes that name keys and the host
/// names a request may be addressed to.
#[derive(Clone)]
pub struct Access {
    /// Bearer token of the routes that name keys; `None`: they are open.
    token: Option<String>,
    /// The address the admin listener is bound to.
    listen: IpAddr,
    /// Extra host names (lower case, no final dot) and addresses.
    names: Vec<String>,
    ips: Vec<IpAddr>,
}

// Not derived: the token must not reach a log.
impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("listen", &self.listen)
            .field("names", &self.names)
            .field("ips", &self.ips)
            .finish()
    }
}

impl Access {
    /// `allowed_hosts` as `config::AdminConfig` holds them (lower case, no
    /// final dot; IPv6 addresses in brackets); `listen` is the bound address.
    pub fn new(token: Option<String>, allowed_hosts: &[String], listen: SocketAddr) -> Access {
        let mut names = Vec::new();
        let mut ips = Vec::new();
        for host in allowed_hosts {
            match parse_ip(host) {
                Some(ip) => ips.push(ip),
                None => names.push(host.to_ascii_lowercase()),
            }
        }
        Access {
            token,
            listen: listen.ip(),
            names,
            ips,
        }
    }

    /// Whether a request addressed to `host` (from `Host` or an absolute
    /// target, port removed) may be answered. DNS rebinding makes a browser
    /// send the attacker's own name, so names must be known ones; an IP
    /// address cannot be rebound, but only the listen address (any, when
    /// listening on all of them) and loopback addresses are ours.
    fn host_allowed(&self, host: &str) -> bool {
        if let Some(ip) = parse_ip(host) {
            return ip.is_loopback()
                || ip == self.listen
                || self.listen.is_unspecified()
                || self.ips.contains(&ip);
        }
        let host = host.to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host);
        host == "localhost" || host.ends_with(".localhost") || self.names.iter().any(|n| n == host)
    }

    /// Whether `request` carries the bearer token (always, when none is set).
    /// The comparison takes a time that depends only on the token's length.
    fn authorized(&self, request: &Parts) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let Some(credentials) = request
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().split_first_chunk::<7>())
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, rest)| rest.trim_ascii())
        else {
            return false;
        };
        crate::server::local::secret_eq(token.as_bytes(), credentials)
    }
}

/// An IP address, IPv6 in brackets as in a URI.
fn parse_ip(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse().ok(),
        None => host.parse().ok(),
    }
}

/// The known admin paths.
#[derive(Clone, Copy)]
enum Route {
    Health,
    Ready,
    Metrics,
    Hotkeys,
}

impl Route {
    /// Whether the route's answer names keys, which needs the token.
    fn names_keys(self) -> bool {
        matches!(self, Route::Hotkeys)
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Bytes> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Probes and scrapes must always see the current state.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Bytes> {
    reply(status, TEXT_PLAIN, body)
}

/// Routes one request head; the body, if any, is never read.
///
/// In order: a request for a host that is not ours is 421 (400 when an
/// HTTP/1.1 request has no usable `Host`), an unknown path 404 whatever the
/// method, a known path with a method other than GET or HEAD 405 with
/// `Allow: GET, HEAD`, a route that names keys without the bearer token 401
/// with `WWW-Authenticate`. The query string is ignored. HEAD is answered as
/// GET: hyper sends the head with the GET body's length and drops the body.
pub fn respond(state: &dyn AdminState, access: &Access, request: &Parts) -> Response<Bytes> {
    // An absolute-form target's authority overrides `Host` (RFC 9112 3.2.2).
    let authority = match request.uri.authority() {
        Some(authority) => Some(Ok(authority.clone())),
        None => request
            .headers
            .get(header::HOST)
            .map(|value| Authority::try_from(value.as_bytes()).map_err(|_| ())),
    };
    match authority {
        // HTTP/1.0 predates `Host`; HTTP/1.1 requires it (RFC 9112 3.2).
        None if request.version < Version::HTTP_11 => {}
        None => return text(StatusCode::BAD_REQUEST, "missing Host header\n"),
        Some(Err(())) => return text(StatusCode::BAD_REQUEST, "bad Host header\n"),
        // No user information, and a port only if it is a number.
        Some(Ok(a))
            if a.as_str().contains('@')
                || (a.as_str().len() != a.host().len() && a.port_u16().is_none()) =>
        {
            return text(StatusCode::BAD_REQUEST, "bad Host header\n")
        }
        Some(Ok(a)) if !access.host_allowed(a.host()) => {
            return text(StatusCode::MISDIRECTED_REQUEST, "unknown host\n")
        }
        Some(Ok(_)) => {}
    }
    let route = match request.uri.path() {
        // Liveness: answering at all is the signal, so this never checks state.
        "/health" => Route::Health,
        // Readiness: load balancers and orchestrators route traffic on this.
        "/ready" => Route::Ready,
        // Scraped by Prometheus.
        "/metrics" => Route::Metrics,
        // The top keys by requests, as JSON (statistics).
        "/hotkeys" => Route::Hotkeys,
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    if request.method != Method::GET && request.method != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        return response;
    }
    if route.names_keys() && !access.authorized(request) {
        let mut response = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(BEARER_CHALLENGE),
        );
        return response;
    }
    match route {
        Route::Health => text(StatusCode::OK, "ok\n"),
        Route::Ready if state.ready() => text(StatusCode::OK, "ready\n"),
        Route::Ready => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        Route::Hotkeys => {
            let mut out = String::new();
            if state.render_hotkeys(&mut out) {
                reply(StatusCode::OK, JSON, out)
            } else {
                text(StatusCode::NOT_FOUND, "statistics are disabled\n")
            }
        }
        Route::Metrics => {
            let mut out = String::with_capacity(4096);
            state.render_metrics(&mut out);
            reply(StatusCode::OK, PROMETHEUS_TEXT, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Request;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    struct FakeState {
        ready: AtomicBool,
        renders: AtomicUsize,
        hotkeys: bool,
    }

    impl FakeState {
        fn new(ready: bool) -> Self {
            FakeState {
                ready: AtomicBool::new(ready),
                renders: AtomicUsize::new(0),
                hotkeys: true,
            }
        }
    }

    impl AdminState for FakeState {
        fn ready(&self) -> bool {
            self.ready.load(Ordering::SeqCst)
        }
        fn render_metrics(&self, out: &mut String) {
            self.renders.fetch_add(1, Ordering::SeqCst);
            out.push_str("# TYPE up gauge\nup 1\n");
        }
        fn render_hotkeys(&self, out: &mut String) -> bool {
            out.push_str("{\"keys\":[\"k\"]}");
            self.hotkeys
        }
    }

    const LISTEN: &str = "127.0.0.1:9121";

    fn open() -> Access {
        Access::new(None, &[], LISTEN.parse().unwrap())
    }

    fn with_token() -> Access {
        Access::new(Some("s3cret".into()), &[], LISTEN.parse().unwrap())
    }

    /// A request head with `Host: 127.0.0.1:9121` and `extra` headers.
    fn req(method: &str, target: &str, extra: &[(&str, &str)]) -> Parts {
        let mut builder = Request::builder()
            .method(method)
            .uri(target)
            .header("host", LISTEN);
        for (name, value) in extra {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    /// (status, content type, body) of a reply.
    fn parts(response: &Response<Bytes>) -> (u16, &str, &str) {
        (
            response.status().as_u16(),
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            std::str::from_utf8(response.body()).unwrap(),
        )
    }

    fn get(state: &FakeState, method: &str, target: &str) -> (u16, String, String) {
        let response = respond(state, &open(), &req(method, target, &[]));
        let (s, t, b) = parts(&response);
        (s, t.to_string(), b.to_string())
    }

    fn plain(status: u16, body: &str) -> (u16, String, String) {
        (status, TEXT_PLAIN.to_string(), body.to_string())
    }

    #[test]
    fn health_is_ok_even_when_not_ready() {
        let state = FakeState::new(false);
        assert_eq!(get(&state, "GET", "/health"), plain(200, "ok\n"));
        assert_eq!(get(&state, "HEAD", "/health"), plain(200, "ok\n"));
    }

    #[test]
    fn ready_follows_state() {
        let state = FakeState::new(false);
        assert_eq!(get(&state, "GET", "/ready"), plain(503, "not ready\n"));
        state.ready.store(true, Ordering::SeqCst);
        assert_eq!(get(&state, "GET", "/ready"), plain(200, "ready\n"));
        assert_eq!(get(&state, "HEAD", "/ready"), plain(200, "ready\n"));
    }

    #[test]
    fn metrics_renders_state_with_prometheus_content_type() {
        let state = FakeState::new(true);
        assert_eq!(
            get(&state, "GET", "/metrics"),
            (
                200,
                "text/plain; version=0.0.4; charset=utf-8".to_string(),
                "# TYPE up gauge\nup 1\n".to_string()
            )
        );
        assert_eq!(state.renders.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn every_reply_forbids_caching() {
        let state = FakeState::new(true);
        for target in ["/health", "/ready", "/metrics", "/nope"] {
            let response = respond(&state, &open(), &req("GET", target, &[]));
            assert_eq!(
                response.headers().get(header::CACHE_CONTROL).unwrap(),
                "no-store"
            );
        }
    }

    #[test]
    fn query_string_is_ignored() {
        let state = FakeState::new(true);
        assert_eq!(get(&state, "GET", "/health?verbose=1"), plain(200, "ok\n"));
        assert_eq!(get(&state, "GET", "/ready?"), plain(200, "ready\n"));
        assert_eq!(get(&state, "GET", "/metrics?x=y").0, 200);
        assert_eq!(get(&state, "GET", "/nope?/health").0, 404);
    }

    #[test]
    fn unknown_paths_are_404_for_any_method() {
        let state = FakeState::new(true);
        for path in ["/", "*", "/health/", "/HEALTH", "/metrics/x", "/readyz"] {
            for method in ["GET", "HEAD", "POST"] {
                assert_eq!(
                    get(&state, method, path),
                    plain(404, "not found\n"),
                    "{method} {path}"
                );
            }
        }
    }

    #[test]
    fn other_methods_on_known_paths_are_405_with_allow() {
        let state = FakeState::new(true);
        for path in ["/health", "/ready", "/metrics", "/hotkeys"] {
            // Methods are case-sensitive in HTTP, so "get" is not GET.
            for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get"] {
                let response = respond(&state, &open(), &req(method, path, &[]));
                assert_eq!(
                    parts(&response),
                    (405, TEXT_PLAIN, "method not allowed\n"),
                    "{method} {path}"
                );
                assert_eq!(response.headers().get(header::ALLOW).unwrap(), "GET, HEAD");
            }
        }
        assert_eq!(state.renders.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn absolute_form_targets_route_by_path() {
        let state = FakeState::new(true);
        assert_eq!(
            get(&state, "GET", "http://localhost:9/ready?x"),
            plain(200, "ready\n")
        );
        assert_eq!(get(&state, "GET", "http://localhost").0, 404);
    }

    #[test]
    fn hotkeys_needs_the_bearer_token_when_one_is_set() {
        let state = FakeState::new(true);
        let access = with_token();
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("Basic czNjcmV0"),
            Some("s3cret"),
            Some("Bearer"),
        ] {
            let extra: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
            let response = respond(&state, &access, &req("GET", "/hotkeys", &extra));
            assert_eq!(
                parts(&response),
                (401, TEXT_PLAIN, "unauthorized\n"),
                "{auth:?}"
            );
            assert_eq!(
                response.headers().get(header::WWW_AUTHENTICATE).unwrap(),
                BEARER_CHALLENGE
            );
        }
        for auth in ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret "] {
            let response = respond(
                &state,
                &access,
                &req("GET", "/hotkeys", &[("authorization", auth)]),
            );
            assert_eq!(
                parts(&response),
                (200, JSON, "{\"keys\":[\"k\"]}"),
                "{auth}"
            );
        }
        // Without a token the route is open; the others never need one.
        let response = respond(&state, &open(), &req("GET", "/hotkeys", &[]));
        assert_eq!(response.status(), 200);
        for path in ["/health", "/ready", "/metrics"] {
            assert_eq!(
                respond(&state, &access, &req("GET", path, &[])).status(),
                200
            );
        }
    }

    #[test]
    fn the_token_is_checked_before_telling_whether_statistics_are_on() {
        let state = FakeState {
            hotkeys: false,
            ..FakeState::new(true)
        };
        assert_eq!(
            respond(&state, &with_token(), &req("GET", "/hotkeys", &[])).status(),
            401
        );
        let ok = [("authorization", "Bearer s3cret")];
        assert_eq!(
            parts(&respond(
                &state,
                &with_token(),
                &req("GET", "/hotkeys", &ok)
            )),
            (404, TEXT_PLAIN, "statistics are disabled\n")
        );
    }

    fn host_status(access: &Access, host: Option<&str>, version: Version) -> u16 {
        let mut builder = Request::builder().uri("/health").version(version);
        if let Some(host) = host {
            builder = builder.header("host", host);
        }
        let request = builder.body(()).unwrap().into_parts().0;
        respond(&FakeState::new(true), access, &request)
            .status()
            .as_u16()
    }

    #[test]
    fn host_must_be_ours() {
        let extra = [
            "proxy.internal".to_string(),
            "10.0.0.9".to_string(),
            "[fd00::1]".to_string(),
        ];
        let access = Access::new(None, &extra, LISTEN.parse().unwrap());
        for ok in [
            "127.0.0.1:9121",
            "127.0.0.1",
            "127.0.0.2:80",
            "[::1]:9121",
            "localhost:9121",
            "LOCALHOST",
            "localhost.",
            "app.localhost:1",
            "proxy.internal:9121",
            "Proxy.Internal.",
            "10.0.0.9:9121",
            "[fd00::1]:1",
        ] {
            assert_eq!(
                host_status(&access, Some(ok), Version::HTTP_11),
                200,
                "{ok}"
            );
        }
        for bad in [
            "evil.example:9121",
            "localhost.evil.example",
            "notlocalhost",
            "10.0.0.8:9121",
            "[fd00::2]",
            "proxy.internal.evil",
        ] {
            assert_eq!(
                host_status(&access, Some(bad), Version::HTTP_11),
                421,
                "{bad}"
            );
        }
        for malformed in ["", "a b", "user@localhost", "localhost:port"] {
            assert_eq!(
                host_status(&access, Some(malformed), Version::HTTP_11),
                400,
                "{malformed:?}"
            );
        }
        assert_eq!(host_status(&access, None, Version::HTTP_11), 400);
        assert_eq!(host_status(&access, None, Version::HTTP_10), 200);
        // The authority of an absolute-form target is the host asked for.
        let request = Request::builder()
            .uri("http://evil.example/health")
            .header("host", "localhost")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(
            respond(&FakeState::new(true), &access, &request).status(),
            421
        );
    }

    #[test]
    fn listening_on_every_address_accepts_any_ip_but_not_any_name() {
        let access = Access::new(None, &[], "0.0.0.0:9121".parse().unwrap());
        assert_eq!(
            host_status(&access, Some("10.1.2.3:9121"), Version::HTTP_11),
            200
        );
        assert_eq!(
            host_status(&access, Some("[2001:db8::1]:9121"), Version::HTTP_11),
            200
        );
        assert_eq!(
            host_status(&access, Some("rebind.example:9121"), Version::HTTP_11),
            421
        );
        let specific = Access::new(None, &[], "10.1.2.3:9121".parse().unwrap());
        assert_eq!(
            host_status(&specific, Some("10.1.2.3:9121"), Version::HTTP_11),
            200
        );
        assert_eq!(
            host_status(&specific, Some("10.1.2.4:9121"), Version::HTTP_11),
            421
        );
    }

    #[test]
    fn the_token_does_not_show_in_debug_output() {
        assert!(!format!("{:?}", with_token()).contains("s3cret"));
    }
}
