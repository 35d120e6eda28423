//! Encoders for the replies the proxy writes itself, in the client's RESP version.

use super::Proto;
use bytes::{BufMut, BytesMut};

pub fn simple(out: &mut BytesMut, s: &str) {
    out.reserve(s.len() + 3);
    out.put_u8(b'+');
    out.put_slice(s.as_bytes());
    out.put_slice(b"\r\n");
}

/// `-<msg>\r\n`; CR and LF inside `msg` become spaces so a reply is always one line.
pub fn error(out: &mut BytesMut, msg: &str) {
    out.reserve(msg.len() + 3);
    out.put_u8(b'-');
    for &b in msg.as_bytes() {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
}

pub fn int(out: &mut BytesMut, v: i64) {
    out.put_u8(b':');
    out.put_slice(itoa(v).as_bytes());
    out.put_slice(b"\r\n");
}

pub fn bulk(out: &mut BytesMut, v: &[u8]) {
    out.reserve(v.len() + 16);
    header(out, b'$', v.len());
    out.put_slice(v);
    out.put_slice(b"\r\n");
}

/// `<t><n>\r\n`. Lengths and counts are mostly below 100 (a tag command's
/// arguments, array headers): those skip the general formatting, which
/// showed up at 5% of the proxy's CPU for `TAGSET` (perf).
#[inline]
fn header(out: &mut BytesMut, t: u8, n: usize) {
    if n < 10 {
        out.put_slice(&[t, b'0' + n as u8, b'\r', b'\n']);
    } else if n < 100 {
        out.put_slice(&[
            t,
            b'0' + (n / 10) as u8,
            b'0' + (n % 10) as u8,
            b'\r',
            b'\n',
        ]);
    } else {
        out.put_u8(t);
        out.put_slice(itoa(n as i64).as_bytes());
        out.put_slice(b"\r\n");
    }
}

/// RESP3 verbatim string (`=`), which RESP2 sees as a bulk string.
pub fn verbatim(out: &mut BytesMut, proto: Proto, v: &[u8]) {
    match proto {
        Proto::Resp2 => bulk(out, v),
        Proto::Resp3 => {
            out.put_u8(b'=');
            out.put_slice(itoa(v.len() as i64 + 4).as_bytes());
            out.put_slice(b"\r\ntxt:");
            out.put_slice(v);
            out.put_slice(b"\r\n");
        }
    }
}

pub fn null(out: &mut BytesMut, proto: Proto) {
    out.put_slice(match proto {
        Proto::Resp2 => b"$-1\r\n",
        Proto::Resp3 => b"_\r\n",
    });
}

pub fn array(out: &mut BytesMut, n: usize) {
    header(out, b'*', n);
}

/// A map of `n` pairs: `%n` in RESP3, a flat array of `2n` in RESP2.
pub fn map(out: &mut BytesMut, proto: Proto, n: usize) {
    match proto {
        Proto::Resp2 => header(out, b'*', n * 2),
        Proto::Resp3 => header(out, b'%', n),
    }
}

/// A set: `~n` in RESP3, an array in RESP2.
pub fn set(out: &mut BytesMut, proto: Proto, n: usize) {
    match proto {
        Proto::Resp2 => header(out, b'*', n),
        Proto::Resp3 => header(out, b'~', n),
    }
}

/// Decimal formatting without allocation.
pub fn itoa(v: i64) -> Itoa {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let neg = v < 0;
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut out = Itoa {
        buf: [0; 21],
        start: 0,
    };
    let digits = &buf[i..];
    let mut start = 21 - digits.len();
    out.buf[start..].copy_from_slice(digits);
    if neg {
        start -= 1;
        out.buf[start] = b'-';
    }
    out.start = start;
    out
}

pub struct Itoa {
    buf: [u8; 21],
    start: usize,
}

impl Itoa {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Encode a command as a RESP array of bulk strings.
pub fn command<A: AsRef<[u8]>>(out: &mut BytesMut, args: &[A]) {
    array(out, args.len());
    for a in args {
        bulk(out, a.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes() {
        let mut b = BytesMut::new();
        int(&mut b, -42);
        int(&mut b, i64::MIN);
        bulk(&mut b, b"hi");
        error(&mut b, "ERR a\r\nb");
        map(&mut b, Proto::Resp2, 2);
        map(&mut b, Proto::Resp3, 2);
        null(&mut b, Proto::Resp3);
        assert_eq!(
            &b[..],
            b":-42\r\n:-9223372036854775808\r\n$2\r\nhi\r\n-ERR a  b\r\n*4\r\n%2\r\n_\r\n"
        );
    }

    #[test]
    fn lengths_at_every_digit_boundary() {
        for n in [0usize, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 65536] {
            let mut b = BytesMut::new();
            bulk(&mut b, &vec![b'x'; n]);
            let head = format!("${n}\r\n");
            assert_eq!(&b[..head.len()], head.as_bytes(), "{n}");
            assert_eq!(b.len(), head.len() + n + 2);
            let mut a = BytesMut::new();
            array(&mut a, n);
            assert_eq!(&a[..], format!("*{n}\r\n").as_bytes());
        }
    }
}
