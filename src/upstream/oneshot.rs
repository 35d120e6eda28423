//! Short-lived connections for the proxy's own questions to a node (topology,
//! command table): connect, authenticate, send, read the replies, close.

use crate::config::Config;
use crate::error::Error;
use crate::net;
use crate::protocol::{encode, ReplyScanner};
use bytes::{Bytes, BytesMut};

/// Send `commands` to `addr` (after AUTH when configured) and return their
/// raw replies, all within the connect timeout plus the command timeout.
pub async fn request(
    config: &Config,
    addr: &str,
    commands: &[&[&[u8]]],
) -> Result<Vec<Bytes>, Error> {
    let u = &config.upstream;
    request_as(
        config,
        addr,
        u.username.as_deref(),
        u.password.as_deref(),
        commands,
    )
    .await
}

/// As [`request`], authenticating with the given credentials (the sentinels
/// have their own).
pub async fn request_as(
    config: &Config,
    addr: &str,
    username: Option<&str>,
    password: Option<&str>,
    commands: &[&[&[u8]]],
) -> Result<Vec<Bytes>, Error> {
    let u = &config.upstream;
    let fut = async {
        let stream = net::connect(addr, u.tls.as_ref())
            .await
            .map_err(Error::io)?;
        let mut out = BytesMut::new();
        let mut skip = 0;
        if let Some(p) = password {
            match username {
                Some(user) => encode::command(
                    &mut out,
                    &[b"AUTH".as_slice(), user.as_bytes(), p.as_bytes()],
                ),
                None => encode::command(&mut out, &[b"AUTH".as_slice(), p.as_bytes()]),
            }
            skip = 1;
        }
        for c in commands {
            encode::command(&mut out, c);
        }
        while !out.is_empty() {
            stream.writable().await.map_err(Error::io)?;
            match net::write_buf(&stream, &mut out) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(Error::io(e)),
            }
        }
        let mut rbuf = BytesMut::with_capacity(16 * 1024);
        let mut scanner = ReplyScanner::new();
        let mut replies = Vec::new();
        while replies.len() < commands.len() + skip {
            match scanner.scan(&rbuf).map_err(Error::io)? {
                Some(len) => replies.push(rbuf.split_to(len).freeze()),
                None => {
                    stream.readable().await.map_err(Error::io)?;
                    match net::read_buf(&stream, &mut rbuf) {
                        Ok(0) => return Err(Error::io("connection closed")),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(Error::io(e)),
                    }
                }
            }
        }
        if skip == 1 && replies[0].first() == Some(&b'-') {
            return Err(Error::reply(format!(
                "AUTH refused: {}",
                String::from_utf8_lossy(&replies[0]).trim_end()
            )));
        }
        Ok(replies.split_off(skip))
    };
    match tokio::time::timeout(u.connect_timeout + u.command_timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::io("timed out")),
    }
}
