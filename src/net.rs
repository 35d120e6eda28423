//! Socket plumbing shared by client sessions and upstream connections:
//! non-blocking reads and writes that cost no wasted syscalls, over plain TCP
//! or TLS ([`Stream`]).

use crate::tls::TlsIo;
use bytes::BytesMut;
use std::io;
use std::task::{Context, Poll};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// A connection, plaintext or TLS. The calls below are what sessions and
/// upstream connections use; on the plaintext side each is the socket call
/// behind one branch.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsIo>),
}

impl Stream {
    #[inline]
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => t.tcp(),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// TLS: encrypted bytes wait for the socket to take them (the caller
    /// must wait for writability and call [`write_buf`] even with nothing new).
    #[inline]
    pub fn pending_write(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(t) => t.pending_write(),
        }
    }

    #[inline]
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp().poll_read_ready(cx)
    }

    #[inline]
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp().poll_write_ready(cx)
    }

    /// Waits until a read may find something. TLS: bytes still queued for
    /// sending are sent meanwhile (the peer may wait for them before it answers).
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.readable().await,
            Stream::Tls(t) => loop {
                if !t.pending_write() {
                    return t.tcp().readable().await;
                }
                tokio::select! {
                    r = t.tcp().readable() => return r,
                    r = t.tcp().writable() => {
                        r?;
                        match t.flush() {
                            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                            _ => {}
                        }
                    }
                }
            },
        }
    }

    pub async fn writable(&self) -> io::Result<()> {
        self.tcp().writable().await
    }

    /// TLS: sends `close_notify` and whatever is queued, waiting at most
    /// `within` for the socket (a reply written just before closing, e.g.
    /// QUIT's, must not be lost). Plaintext: nothing to do.
    pub async fn close(&self, within: std::time::Duration) {
        if let Stream::Tls(t) = self {
            t.close_notify();
            let _ = tokio::time::timeout(within, async {
                loop {
                    match t.flush() {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            if t.tcp().writable().await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    }
                }
            })
            .await;
        }
    }
}

/// Reads until something arrives: `Ok(0)` is end of stream.
pub async fn read_some(stream: &Stream, buf: &mut BytesMut) -> io::Result<usize> {
    loop {
        match read_buf(stream, buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.readable().await?,
            r => return r,
        }
    }
}

/// Writes all of `buf` (and, TLS, everything queued).
pub async fn write_all(stream: &Stream, buf: &mut BytesMut) -> io::Result<()> {
    while !buf.is_empty() || stream.pending_write() {
        match write_buf(stream, buf) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Why [`connect`] failed; `Display` says what failed without the address
/// (callers name the node).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connection (resolving, connecting).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The TLS server name or handshake.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// A connection to an upstream node at `addr` (`host:port`), TLS when
/// `tls` is set, tuned. The caller bounds the time it takes.
pub async fn connect(
    addr: &str,
    tls: Option<&crate::config::UpstreamTlsConfig>,
) -> Result<Stream, ConnectError> {
    let tcp = TcpStream::connect(addr).await?;
    tune(&tcp);
    match tls {
        None => Ok(Stream::Plain(tcp)),
        Some(t) => {
            let name = crate::tls::server_name(t.server_name.as_deref(), addr)?;
            let io = crate::tls::connect(t.client.get(), name, tcp).await?;
            Ok(Stream::Tls(Box::new(io)))
        }
    }
}

/// Smallest free space a read is given.
pub const READ_CHUNK: usize = 16 * 1024;

/// Read what the socket has into `buf` without blocking.
///
/// `Ok(0)` is end of stream, `Err(WouldBlock)` means nothing was there. A read
/// that did not fill the free space drained the socket, so readiness is cleared
/// right away: the usual "read again until EAGAIN" would cost one more syscall
/// per request, which at pipeline 1 is a large share of the proxy's CPU. tokio
/// keeps this race-free: readiness is only cleared if no newer event arrived.
#[inline]
pub fn read_buf(stream: &Stream, buf: &mut BytesMut) -> io::Result<usize> {
    match stream {
        Stream::Plain(s) => read_tcp(s, buf),
        Stream::Tls(t) => t.read_buf(buf),
    }
}

fn read_tcp(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    read_tcp_spare(stream, buf)
}

/// [`read_buf`] into the free capacity `buf` has, without making more: a
/// buffer sized for one reply is not grown (and so reallocated) by the read.
/// TLS: as [`read_buf`] (rustls hands over all the plaintext it decrypted).
pub fn read_spare(stream: &Stream, buf: &mut BytesMut) -> io::Result<usize> {
    match stream {
        Stream::Plain(s) => read_tcp_spare(s, buf),
        Stream::Tls(t) => t.read_buf(buf),
    }
}

fn read_tcp_spare(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    debug_assert!(buf.capacity() > buf.len());
    let mut got = None;
    let res = stream.try_io(Interest::READABLE, || {
        let spare = buf.capacity() - buf.len();
        let n = stream.try_read_buf(buf)?;
        got = Some(n);
        if n > 0 && n < spare {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match (got, res) {
        (Some(n), _) => Ok(n),
        (None, Ok(n)) => Ok(n),
        (None, Err(e)) => Err(e),
    }
}

/// Write as much of `buf` as the socket takes now; drops what was written.
/// Returns `Err(WouldBlock)` only when nothing could be written.
/// TLS: see [`TlsIo::write_buf`].
#[inline]
pub fn write_buf(stream: &Stream, buf: &mut BytesMut) -> io::Result<usize> {
    let s = match stream {
        Stream::Plain(s) => s,
        Stream::Tls(t) => return t.write_buf(buf),
    };
    let n = s.try_write(buf)?;
    bytes::Buf::advance(buf, n);
    Ok(n)
}

/// TCP_NODELAY on, as every Redis client and server does. Congestion control
/// is set to `cubic` when the system default is BBR: BBR paces every send with
/// a timer, which on loopback and LAN links costs CPU and latency per request
/// for nothing (measured in BENCHMARKS.md).
pub fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let sock = socket2::SockRef::from(stream);
    if std::env::var_os("RESPITE_KEEP_CC").is_none() {
        if let Ok(cc) = sock.tcp_congestion() {
            if cc.starts_with(b"bbr") {
                let _ = sock.set_tcp_congestion(b"cubic");
            }
        }
    }
}
