//! One sentinel's event stream: subscribe to the events that say the
//! master's primary changed or failed, and ask for a re-check on each.

use super::Sentinel;
use crate::net;
use crate::protocol::{encode, ReplyScanner, Value};
use bytes::BytesMut;
use std::sync::Arc;
use std::time::Duration;

/// Events about a master that can mean its primary changed or is failing.
const CHANNELS: [&[u8]; 7] = [
    b"+switch-master",
    b"+sdown",
    b"-sdown",
    b"+odown",
    b"+failover-end",
    b"+convert-to-slave",
    b"+reset-master",
];

/// A silent subscription is probed with `PING` after this long, and given
/// up after twice this long without a byte.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// Keep a subscription to sentinel `i` up for the life of the process.
pub(super) async fn watch(s: Arc<Sentinel>, i: usize) {
    let u = &s.config.upstream;
    let mut backoff = u.reconnect_backoff_min;
    loop {
        let addr = s.sentinels[i].lock().addr.clone();
        let err = subscribe(&s, i, &addr).await;
        let was_up = s.sentinels[i].lock().subscribed;
        s.set_subscribed(i, false, Some(err.clone()));
        tracing::debug!(sentinel = %addr, error = %err, "sentinel subscription lost");
        if was_up {
            backoff = u.reconnect_backoff_min;
            // It may have gone down with news: look again.
            s.request_refresh();
        }
        // Whatever it missed meanwhile, the periodic check catches.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(u.reconnect_backoff_max);
    }
}

/// Runs until the subscription fails; returns why.
async fn subscribe(s: &Sentinel, i: usize, addr: &str) -> String {
    let u = &s.config.upstream;
    let stream =
        match tokio::time::timeout(u.connect_timeout, net::connect(addr, u.tls.as_ref())).await {
            Ok(Ok(st)) => st,
            Ok(Err(e)) => return e.to_string(),
            Err(_) => return "connect timed out".to_string(),
        };
    let mut out = BytesMut::new();
    let mut expect_auth = false;
    if let Some(p) = &u.sentinel_password {
        match &u.sentinel_username {
            Some(user) => encode::command(
                &mut out,
                &[b"AUTH".as_slice(), user.as_bytes(), p.as_bytes()],
            ),
            None => encode::command(&mut out, &[b"AUTH".as_slice(), p.as_bytes()]),
        }
        expect_auth = true;
    }
    let mut sub: Vec<&[u8]> = vec![b"SUBSCRIBE"];
    sub.extend_from_slice(&CHANNELS);
    encode::command(&mut out, &sub);
    if let Err(e) = net::write_all(&stream, &mut out).await {
        return e.to_string();
    }
    let mut rbuf = BytesMut::with_capacity(4096);
    let mut scanner = ReplyScanner::new();
    let mut silent = 0;
    loop {
        while let Some(len) = match scanner.scan(&rbuf) {
            Ok(l) => l,
            Err(e) => return e.to_string(),
        } {
            let frame = rbuf.split_to(len);
            let v = match Value::decode_exact(&frame) {
                Ok(v) => v,
                Err(e) => return e.to_string(),
            };
            if let Value::Error(e) = &v {
                return String::from_utf8_lossy(e).into_owned();
            }
            if expect_auth {
                expect_auth = false;
                continue;
            }
            on_frame(s, i, addr, &v);
        }
        match tokio::time::timeout(KEEPALIVE, net::read_some(&stream, &mut rbuf)).await {
            Ok(Ok(0)) => return "connection closed by sentinel".to_string(),
            Ok(Ok(_)) => silent = 0,
            Ok(Err(e)) => return e.to_string(),
            Err(_) => {
                silent += 1;
                if silent > 1 {
                    return "no answer to PING".to_string();
                }
                let mut ping = BytesMut::new();
                encode::command(&mut ping, &[b"PING".as_slice()]);
                if let Err(e) = net::write_all(&stream, &mut ping).await {
                    return e.to_string();
                }
            }
        }
    }
}

/// A subscription confirmation or an event.
fn on_frame(s: &Sentinel, i: usize, addr: &str, v: &Value) {
    let Some(parts) = v.as_array() else { return };
    let text = |j: usize| parts.get(j).and_then(|p| p.as_bytes()).unwrap_or_default();
    match text(0) {
        b"subscribe" if !s.sentinels[i].lock().subscribed => {
            s.set_subscribed(i, true, None);
            tracing::debug!(sentinel = %addr, "sentinel subscription up");
            // A sentinel (back) up may know more than we do.
            s.request_refresh();
        }
        b"message" => {
            let (channel, payload) = (text(1), String::from_utf8_lossy(text(2)));
            // "+switch-master NAME ..." or "<type> <name> <ip> <port> [@ MASTER ...]":
            // only events naming our master matter.
            if payload.split(' ').any(|w| w == s.master) {
                let channel = String::from_utf8_lossy(channel);
                if channel == "+switch-master" {
                    tracing::info!(sentinel = %addr, event = %payload, "sentinel: +switch-master");
                } else {
                    tracing::debug!(sentinel = %addr, %channel, event = %payload, "sentinel event");
                }
                s.request_refresh();
            }
        }
        _ => {}
    }
}
