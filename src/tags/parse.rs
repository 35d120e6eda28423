//! Arguments of the tag commands, checked as Redis checks `SET`'s: arity
//! errors and `syntax error` worded like Redis's own.

use crate::error::{self, Error, NOT_INT, SYNTAX};
use crate::protocol::request::parse_int;

fn arity(name: &str) -> Error {
    Error::client(error::arity(name))
}

fn syntax() -> Error {
    Error::client(SYNTAX)
}

/// `TAGSET key value [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL] [NX|XX] TAGS tag ...`
#[derive(Debug, PartialEq, Eq)]
pub struct TagSet<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// `EX`, `PX`, `EXAT`, `PXAT` or `KEEPTTL`, as SET takes it.
    pub expiry: Option<(&'static str, &'a [u8])>,
    /// `NX` or `XX`.
    pub cond: Option<&'static str>,
    /// Distinct tags, first occurrence kept.
    pub tags: Vec<&'a [u8]>,
}

/// Distinct tags in order of first appearance.
pub fn distinct<'a>(tags: impl IntoIterator<Item = &'a [u8]>) -> Vec<&'a [u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for t in tags {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

pub fn tagset<'a>(args: &[&'a [u8]]) -> Result<TagSet<'a>, Error> {
    if args.len() < 5 {
        return Err(arity("tagset"));
    }
    let mut expiry = None;
    let mut cond = None;
    let mut i = 3;
    loop {
        let Some(a) = args.get(i) else {
            // No TAGS.
            return Err(syntax());
        };
        let upper = a.to_ascii_uppercase();
        match &upper[..] {
            b"TAGS" => break,
            b"NX" | b"XX" if cond.is_none() => {
                cond = Some(if upper == b"NX" { "NX" } else { "XX" });
                i += 1;
            }
            b"KEEPTTL" if expiry.is_none() => {
                expiry = Some(("KEEPTTL", &b""[..]));
                i += 1;
            }
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if expiry.is_none() => {
                let Some(n) = args.get(i + 1) else {
                    return Err(syntax());
                };
                let opt = match &upper[..] {
                    b"EX" => "EX",
                    b"PX" => "PX",
                    b"EXAT" => "EXAT",
                    _ => "PXAT",
                };
                expiry = Some((opt, *n));
                i += 2;
            }
            _ => return Err(syntax()),
        }
    }
    if let Some((opt, n)) = expiry {
        if opt != "KEEPTTL" {
            check_expire(opt, n)?;
        }
    }
    let tags = distinct(args[i + 1..].iter().copied());
    if tags.is_empty() {
        return Err(syntax());
    }
    Ok(TagSet {
        key: args[1],
        value: args[2],
        expiry,
        cond,
        tags,
    })
}

/// Redis's checks on SET's expire argument, with TAGSET's name in the error.
fn check_expire(opt: &str, n: &[u8]) -> Result<(), Error> {
    let v = parse_int(n).ok_or(Error::client(NOT_INT))?;
    let invalid = || Error::client("ERR invalid expire time in 'tagset' command");
    if v <= 0 {
        return Err(invalid());
    }
    let seconds = opt == "EX" || opt == "EXAT";
    let ms = if seconds {
        v.checked_mul(1000).ok_or_else(invalid)?
    } else {
        v
    };
    if opt == "EX" || opt == "PX" {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        ms.checked_add(now).ok_or_else(invalid)?;
    }
    Ok(())
}

/// `TAGADD key tag [tag ...]`
pub fn tagadd<'a>(args: &[&'a [u8]]) -> Result<(&'a [u8], Vec<&'a [u8]>), Error> {
    if args.len() < 3 {
        return Err(arity("tagadd"));
    }
    Ok((args[1], distinct(args[2..].iter().copied())))
}

/// `TAGINVAL tag [tag ...]`
pub fn taginval<'a>(args: &[&'a [u8]]) -> Result<Vec<&'a [u8]>, Error> {
    if args.len() < 2 {
        return Err(arity("taginval"));
    }
    Ok(distinct(args[1..].iter().copied()))
}

/// `TAGKEYS tag` / `TAGSOF key`: one argument.
pub fn one<'a>(args: &[&'a [u8]], name: &str) -> Result<&'a [u8], Error> {
    if args.len() != 2 {
        return Err(arity(name));
    }
    Ok(args[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Vec<&[u8]> {
        s.split(' ').map(|w| w.as_bytes()).collect()
    }

    #[test]
    fn tagset_options_and_errors() {
        let t = tagset(&a("TAGSET k v ex 10 nx TAGS a b a")).unwrap();
        assert_eq!(t.expiry, Some(("EX", &b"10"[..])));
        assert_eq!(t.cond, Some("NX"));
        assert_eq!(t.tags, vec![&b"a"[..], b"b"]);
        let t = tagset(&a("TAGSET k v XX KEEPTTL TAGS EX")).unwrap();
        assert_eq!(t.expiry, Some(("KEEPTTL", &b""[..])));
        assert_eq!(t.tags, vec![&b"EX"[..]]);
        assert_eq!(tagset(&a("TAGSET k v TAGS")), Err(arity("tagset")));
        assert_eq!(tagset(&a("TAGSET k v EX 10")), Err(syntax()));
        assert_eq!(tagset(&a("TAGSET k v EX 10 TAGS")), Err(syntax()));
        assert_eq!(tagset(&a("TAGSET k v NX XX TAGS a")), Err(syntax()));
        assert_eq!(tagset(&a("TAGSET k v EX 1 PX 1 TAGS a")), Err(syntax()));
        assert_eq!(tagset(&a("TAGSET k v KEEPTTL EX 1 TAGS a")), Err(syntax()));
        assert_eq!(
            tagset(&a("TAGSET k v EX x TAGS a")),
            Err(Error::client(NOT_INT))
        );
        assert_eq!(
            tagset(&a("TAGSET k v EX 0 TAGS a")),
            Err(Error::client("ERR invalid expire time in 'tagset' command"))
        );
        assert!(tagset(&a("TAGSET k v PXAT 1 TAGS a")).is_ok());
    }
}
