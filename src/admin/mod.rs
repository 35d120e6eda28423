//! Admin HTTP endpoint: `/health`, `/ready`, `/metrics` and `/hotkeys` for probes and
//! Prometheus, kept apart from the Redis data path.
//!
//! Three pieces, each testable on its own:
//!
//! - [`respond`] is the whole router as a pure function of
//!   (state, method, path), so every route is tested without a socket.
//! - [`serve`] (in `http.rs`) is a deliberately small HTTP/1.1 server: it
//!   reads a bounded request head, calls [`respond`], writes the reply, and
//!   supports keep-alive. It knows nothing about the routes.
//! - [`PromWriter`] (in `prom.rs`) writes the Prometheus text format; the rest
//!   of the proxy renders its metrics through it from
//!   [`AdminState::render_metrics`].

mod http;
mod prom;
pub mod proxy;
#[cfg(test)]
mod server_tests;

pub use http::{serve, serve_with_limits, AdminLimits};
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
    fn render_metrics(&self, out: &mut String);

    /// Appends the hot keys as JSON (`/hotkeys`); false when there are none
    /// to give (statistics disabled), which answers 404.
    fn render_hotkeys(&self, _out: &mut String) -> bool {
        false
    }
}

/// Content type of `/hotkeys`.
pub const JSON: &str = "application/json";

/// A reply chosen by [`respond`]; the HTTP framing (status line,
/// `Content-Length`, `Connection`, `Allow`) is added by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// Content type of plain-text replies.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// Content type Prometheus expects for text exposition format 0.0.4.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Value of the `Allow` header sent with every 405 reply.
pub const ALLOWED_METHODS: &str = "GET, HEAD";

impl Response {
    fn text(status: u16, body: &str) -> Self {
        Response {
            status,
            content_type: TEXT_PLAIN,
            body: body.as_bytes().to_vec(),
        }
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

/// Routes one request. `path` may carry a query string, which is ignored.
///
/// An unknown path is 404 whatever the method, and a known path with a method
/// other than GET or HEAD is 405 (the server adds `Allow: GET, HEAD`), the way
/// common routers behave. A HEAD reply has the GET reply's status and content
/// type and an empty body; the server, which must announce the GET body's
/// length, asks for GET and drops the body itself.
pub fn respond(state: &dyn AdminState, method: &str, path: &str) -> Response {
    let path = path.split_once('?').map_or(path, |(path, _query)| path);
    let route = match path {
        // Liveness: answering at all is the signal, so this never checks state.
        "/health" => Route::Health,
        // Readiness: load balancers and orchestrators route traffic on this.
        "/ready" => Route::Ready,
        // Scraped by Prometheus.
        "/metrics" => Route::Metrics,
        // The top keys by requests, as JSON (statistics).
        "/hotkeys" => Route::Hotkeys,
        _ => return Response::text(404, "not found\n"),
    };
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Response::text(405, "method not allowed\n"),
    };
    let mut response = match route {
        Route::Health => Response::text(200, "ok\n"),
        Route::Ready if state.ready() => Response::text(200, "ready\n"),
        Route::Ready => Response::text(503, "not ready\n"),
        Route::Hotkeys => {
            let mut out = String::new();
            if state.render_hotkeys(&mut out) {
                Response {
                    status: 200,
                    content_type: JSON,
                    body: out.into_bytes(),
                }
            } else {
                Response::text(404, "statistics are disabled\n")
            }
        }
        Route::Metrics if head_only => Response {
            status: 200,
            content_type: PROMETHEUS_TEXT,
            body: Vec::new(),
        },
        Route::Metrics => {
            let mut out = String::with_capacity(4096);
            state.render_metrics(&mut out);
            Response {
                status: 200,
                content_type: PROMETHEUS_TEXT,
                body: out.into_bytes(),
            }
        }
    };
    if head_only {
        response.body.clear();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    struct FakeState {
        ready: AtomicBool,
        renders: AtomicUsize,
    }

    impl FakeState {
        fn new(ready: bool) -> Self {
            FakeState {
                ready: AtomicBool::new(ready),
                renders: AtomicUsize::new(0),
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
    }

    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: TEXT_PLAIN,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn health_is_ok_even_when_not_ready() {
        let state = FakeState::new(false);
        assert_eq!(respond(&state, "GET", "/health"), text(200, "ok\n"));
        assert_eq!(respond(&state, "HEAD", "/health"), text(200, ""));
    }

    #[test]
    fn ready_follows_state() {
        let state = FakeState::new(false);
        assert_eq!(respond(&state, "GET", "/ready"), text(503, "not ready\n"));
        assert_eq!(respond(&state, "HEAD", "/ready"), text(503, ""));
        state.ready.store(true, Ordering::SeqCst);
        assert_eq!(respond(&state, "GET", "/ready"), text(200, "ready\n"));
        assert_eq!(respond(&state, "HEAD", "/ready"), text(200, ""));
    }

    #[test]
    fn metrics_renders_state_with_prometheus_content_type() {
        let state = FakeState::new(true);
        let response = respond(&state, "GET", "/metrics");
        assert_eq!(
            response,
            Response {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: b"# TYPE up gauge\nup 1\n".to_vec(),
            }
        );
        assert_eq!(state.renders.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn head_metrics_has_no_body_and_skips_rendering() {
        let state = FakeState::new(true);
        let response = respond(&state, "HEAD", "/metrics");
        assert_eq!(response.status, 200);
        assert_eq!(response.content_type, PROMETHEUS_TEXT);
        assert!(response.body.is_empty());
        assert_eq!(state.renders.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn query_string_is_ignored() {
        let state = FakeState::new(true);
        assert_eq!(
            respond(&state, "GET", "/health?verbose=1"),
            text(200, "ok\n")
        );
        assert_eq!(respond(&state, "GET", "/ready?"), text(200, "ready\n"));
        assert_eq!(respond(&state, "GET", "/metrics?x=y").status, 200);
        assert_eq!(respond(&state, "GET", "/nope?/health").status, 404);
    }

    #[test]
    fn unknown_paths_are_404_for_any_method() {
        let state = FakeState::new(true);
        for path in ["/", "", "*", "/health/", "/HEALTH", "/metrics/x", "/readyz"] {
            for method in ["GET", "HEAD", "POST"] {
                assert_eq!(
                    respond(&state, method, path),
                    text(404, "not found\n"),
                    "{method} {path}"
                );
            }
        }
    }

    #[test]
    fn other_methods_on_known_paths_are_405() {
        let state = FakeState::new(true);
        for path in ["/health", "/ready", "/metrics"] {
            // Methods are case-sensitive in HTTP, so "get" is not GET.
            for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get"] {
                assert_eq!(
                    respond(&state, method, path),
                    text(405, "method not allowed\n"),
                    "{method} {path}"
                );
            }
        }
        assert_eq!(state.renders.load(Ordering::SeqCst), 0);
    }
}
