//! respite's key finder against a live redis-server 7.0: the built-in key
//! table must equal what the server's `COMMAND` says, and for thousands of
//! generated argument lists the keys found must be the ones
//! `COMMAND GETKEYS` names (which runs the same code Redis Cluster routes by).

mod common;

use common::{encode, escape, RawConn, RedisServer};
use respite::command::keys::{KeyError, KeyTable};

fn live_table(c: &mut RawConn) -> KeyTable {
    let raw = c.cmd_str(&["COMMAND"]);
    KeyTable::from_command_reply(&raw).unwrap_or_else(|e| panic!("{e}: {}", escape(&raw)))
}

#[test]
fn builtin_table_agrees_with_live_command_reply() {
    let server = RedisServer::start();
    let live = live_table(&mut server.conn());
    assert!(live.len() > 300, "{} commands", live.len());
    let builtin = KeyTable::builtin();
    assert!(builtin.len() >= 80);
    // ACL categories are read too (element 7), subcommands' included.
    use respite::command::keys::AclCats;
    assert_eq!(
        live.get(b"get").unwrap().acl,
        AclCats::READ | AclCats::STRING | AclCats::FAST
    );
    assert!(live
        .get(b"config|set")
        .unwrap()
        .acl
        .contains(AclCats::ADMIN));
    for b in builtin.iter() {
        let l = live
            .get(b.name.as_bytes())
            .unwrap_or_else(|| panic!("server lacks {}", b.name));
        // The built-in rows carry no ACL categories (they come from the upstream).
        let l = respite::command::keys::CommandKeys {
            acl: Default::default(),
            ..l.clone()
        };
        assert_eq!(b, &l, "{}", b.name);
    }
}

/// Arguments for generated commands: keys, numbers (key counts) and the
/// keywords key specs search for.
const WORDS: &[&str] = &[
    "k1",
    "k2",
    "{t}k3",
    "0",
    "1",
    "2",
    "3",
    "-1",
    "STREAMS",
    "KEYS",
    "STORE",
    "STOREDIST",
    "LIMIT",
    "GET",
    "BY",
    "AUTH",
    "AUTH2",
    "COPY",
    "WEIGHTS",
    "$",
    ">",
    "",
    "x",
];

/// Reply of `COMMAND GETKEYS` as key names, or `None` when it is an error.
fn getkeys(reply: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if reply.first() == Some(&b'-') {
        return Err(String::from_utf8_lossy(reply).trim_end().to_string());
    }
    let text = reply;
    let mut keys = Vec::new();
    let mut pos = text.iter().position(|&b| b == b'\n').unwrap() + 1;
    while pos < text.len() {
        let eol = pos + text[pos..].iter().position(|&b| b == b'\n').unwrap();
        let len: usize = std::str::from_utf8(&text[pos + 1..eol - 1])
            .unwrap()
            .parse()
            .unwrap();
        keys.push(text[eol + 1..eol + 1 + len].to_vec());
        pos = eol + 1 + len + 2;
    }
    Ok(keys)
}

#[test]
fn keys_match_command_getkeys() {
    let server = RedisServer::start();
    let mut conn = server.conn();
    let tables = [
        ("live", live_table(&mut conn)),
        ("builtin", KeyTable::builtin().clone()),
    ];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut cases: Vec<Vec<Vec<u8>>> = Vec::new();
    // Sorted by name: the table iterates in hash order, which changes per
    // process, and the generated cases must not (a seed that finds keys for
    // every command in one order may miss some in another).
    let mut cmds: Vec<_> = KeyTable::builtin().iter().collect();
    cmds.sort_by(|a, b| a.name.cmp(&b.name));
    for cmd in cmds {
        if cmd.container {
            continue;
        }
        let name: Vec<Vec<u8>> = cmd.name.split('|').map(|s| s.as_bytes().to_vec()).collect();
        let min = (cmd.arity.unsigned_abs() as usize).saturating_sub(name.len());
        for _ in 0..30 {
            let n = (min + (next() % 6) as usize).saturating_sub((next() % 3) as usize);
            let mut args = name.clone();
            args.extend((0..n).map(|_| {
                WORDS[(next() % WORDS.len() as u64) as usize]
                    .as_bytes()
                    .to_vec()
            }));
            // COMMAND GETKEYS itself wants at least one argument after the name.
            if args.len() >= 2 {
                cases.push(args);
            }
        }
    }
    let mut checked = 0;
    // Commands for which some case found keys: the comparison must not pass
    // only because everything came out empty.
    let mut with_keys: Vec<String> = Vec::new();
    for batch in cases.chunks(500) {
        let mut out = Vec::new();
        for args in batch {
            let mut full: Vec<&[u8]> = vec![b"COMMAND", b"GETKEYS"];
            full.extend(args.iter().map(Vec::as_slice));
            out.extend(encode(&full));
        }
        conn.send(&out);
        for args in batch {
            let reply = conn.read_reply();
            let redis = getkeys(&reply);
            for (which, table) in &tables {
                let ours = table.keys_of(args);
                let shown: Vec<String> = args.iter().map(|a| escape(a)).collect();
                match (&redis, &ours) {
                    (Ok(keys), Ok(idx)) => {
                        let found: Vec<Vec<u8>> = idx.iter().map(|&i| args[i].clone()).collect();
                        assert_eq!(&found, keys, "{which} {shown:?}");
                        if !keys.is_empty() && which == &"live" {
                            let name = String::from_utf8_lossy(&args[0]).to_lowercase();
                            if !with_keys.contains(&name) {
                                with_keys.push(name);
                            }
                        }
                    }
                    // Redis found no keys (invalid key count, missing keyword, ...).
                    (Err(e), Ok(idx)) if !e.contains("number of arguments") => {
                        assert!(idx.is_empty(), "{which} {shown:?}: redis {e}, ours {idx:?}")
                    }
                    // GETKEYS checks arity only for commands that have keys.
                    (Err(e), Err(KeyError::Arity(_)))
                        if e.contains("number of arguments") || e.contains("no key arguments") => {}
                    _ => panic!("{which} {shown:?}: redis {redis:?}, ours {ours:?}"),
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 5000, "{checked}");
    for name in [
        "eval",
        "fcall",
        "zunionstore",
        "lmpop",
        "blmpop",
        "xread",
        "xreadgroup",
        "migrate",
        "sort",
        "georadius",
        "mset",
    ] {
        assert!(
            with_keys.iter().any(|n| n == name),
            "no case of {name} found keys"
        );
    }
    eprintln!("{} commands had keys found: {with_keys:?}", with_keys.len());
}
