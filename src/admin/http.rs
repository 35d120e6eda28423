//! The admin endpoint's server: hyper's HTTP/1.1 connection on each accepted
//! socket, a bound on the request head and its read time, and a connection cap
//! that makes room by closing the connection idle the longest.
//!
//! The cap is what keeps probes working under a flood of idle connections: a
//! new connection past `max_connections` closes the one that has waited
//! longest for a request (its first one or the next on a keep-alive
//! connection), as nginx reuses idle connections when it runs out. A probe
//! sends its request as soon as it connects, so it is answered long before
//! `max_connections` newer connections have arrived, whatever the flood does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use super::{respond, Access, AdminState};
use crate::config::AdminConfig;

/// Pause after a failed accept (usually EMFILE): retrying at once would spin
/// until some descriptor is freed.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// hyper's smallest read buffer; `max_header_bytes` bounds the head inside it.
const MIN_READ_BUFFER: usize = 8192;

/// Bounds on what admin clients can make the proxy hold. Every field bounds a
/// resource a client controls, so none is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminLimits {
    /// Connections open at once; a new one past this closes the idlest.
    pub max_connections: usize,
    /// Larger request heads get 431 and the connection is closed.
    pub max_header_bytes: usize,
    /// A head not fully received in this time closes the connection without
    /// a reply; this also ends idle keep-alive connections.
    pub header_timeout: Duration,
}

impl AdminLimits {
    pub fn from_config(config: &AdminConfig) -> AdminLimits {
        AdminLimits {
            max_connections: config.max_connections.max(1),
            max_header_bytes: config.max_header_bytes,
            header_timeout: config.header_timeout,
        }
    }
}

/// The open connections, each with the time (a counter) it last started
/// waiting for a request, and the sender whose drop closes it.
#[derive(Default)]
struct Slots {
    clock: u64,
    open: HashMap<u64, Slot>,
}

struct Slot {
    peer: SocketAddr,
    waiting_since: u64,
    /// Dropping it tells the connection's task to close.
    _close: oneshot::Sender<()>,
}

impl Slots {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Registers a new connection; the receiver resolves when it must close.
    fn add(&mut self, peer: SocketAddr) -> (u64, oneshot::Receiver<()>) {
        let id = self.tick();
        let (close, closed) = oneshot::channel();
        self.open.insert(
            id,
            Slot {
                peer,
                waiting_since: id,
                _close: close,
            },
        );
        (id, closed)
    }

    /// A request arrived on `id`: it becomes the last to be closed for room.
    fn touch(&mut self, id: u64) {
        let now = self.tick();
        if let Some(slot) = self.open.get_mut(&id) {
            slot.waiting_since = now;
        }
    }

    /// Closes the connection that has waited longest for a request.
    fn evict_idlest(&mut self) {
        let idlest = self
            .open
            .iter()
            .min_by_key(|(_, slot)| slot.waiting_since)
            .map(|(&id, _)| id);
        if let Some(slot) = idlest.and_then(|id| self.open.remove(&id)) {
            tracing::debug!(peer = %slot.peer, "admin: connection limit reached, closing the idlest");
        }
    }
}

/// Serves the admin endpoint until `shutdown` becomes `true` (or its sender
/// is dropped, since then nobody could ever stop it).
///
/// Each connection runs in its own task. On shutdown the listener is closed
/// at once, connections waiting for a request are closed, a request being
/// answered is finished, and this returns when every connection task has
/// ended.
pub async fn serve(
    listener: TcpListener,
    state: Arc<dyn AdminState>,
    access: Access,
    mut shutdown: watch::Receiver<bool>,
    limits: AdminLimits,
) {
    let access = Arc::new(access);
    let slots = Arc::new(Mutex::new(Slots::default()));
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            // Checked first so that no connection is accepted after shutdown.
            biased;
            () = shutdown_signalled(&mut shutdown) => break,
            accepted = listener.accept() => accepted,
        };
        // Forget the tasks that ended, so the set stays as small as the cap.
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(%err, "admin: accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let (id, closed) = {
            let mut slots = slots.lock();
            if slots.open.len() >= limits.max_connections {
                slots.evict_idlest();
            }
            slots.add(peer)
        };
        tasks.spawn(connection(
            stream,
            Conn {
                id,
                slots: Arc::clone(&slots),
                state: Arc::clone(&state),
                access: Arc::clone(&access),
                limits,
            },
            closed,
            shutdown.clone(),
        ));
        // Let the new connection read its request (and an evicted one close)
        // before accepting the next: on this single-threaded runtime a burst
        // of accepts would otherwise run ahead of every connection.
        tokio::task::yield_now().await;
    }
    // Refuse new connections now rather than when the drain below finishes.
    drop(listener);
    while tasks.join_next().await.is_some() {}
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

/// What one connection's task shares with the server.
struct Conn {
    id: u64,
    slots: Arc<Mutex<Slots>>,
    state: Arc<dyn AdminState>,
    access: Arc<Access>,
    limits: AdminLimits,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.slots.lock().open.remove(&self.id);
    }
}

/// Serves one connection until either side closes it, the header timeout
/// fires, it is closed for room, or shutdown comes.
async fn connection(
    stream: TcpStream,
    conn: Conn,
    mut closed: oneshot::Receiver<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    let conn = Arc::new(conn);
    let service = {
        let conn = Arc::clone(&conn);
        service_fn(move |request: Request<Incoming>| {
            conn.slots.lock().touch(conn.id);
            let (head, _body) = request.into_parts();
            let response = respond(&*conn.state, &conn.access, &head).map(Full::new);
            std::future::ready(Ok::<_, Infallible>(response))
        })
    };
    let limits = conn.limits;
    let http = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(MIN_READ_BUFFER))
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(http);
    let result = tokio::select! {
        result = http.as_mut() => result,
        // Closed for room: dropping the connection closes the socket.
        _ = &mut closed => return,
        () = shutdown_signalled(&mut shutdown) => {
            // Closes at once between requests, after the reply otherwise;
            // a client that does not read its reply gets no longer than a
            // request head would.
            http.as_mut().graceful_shutdown();
            match tokio::time::timeout(limits.header_timeout, http.as_mut()).await {
                Ok(result) => result,
                Err(_elapsed) => return,
            }
        }
    };
    if let Err(err) = result {
        tracing::debug!(%err, "admin: connection error");
    }
}
