//! Socket plumbing shared by client sessions and upstream connections:
//! non-blocking reads and writes that cost no wasted syscalls.

use bytes::BytesMut;
use std::io;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Smallest free space a read is given.
pub const READ_CHUNK: usize = 16 * 1024;

/// Read what the socket has into `buf` without blocking.
///
/// `Ok(0)` is end of stream, `Err(WouldBlock)` means nothing was there. A read
/// that did not fill the free space drained the socket, so readiness is cleared
/// right away: the usual "read again until EAGAIN" would cost one more syscall
/// per request, which at pipeline 1 is a large share of the proxy's CPU. tokio
/// keeps this race-free: readiness is only cleared if no newer event arrived.
pub fn read_buf(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
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
pub fn write_buf(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let n = stream.try_write(buf)?;
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
