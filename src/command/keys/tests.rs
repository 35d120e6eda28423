//! Unit tests of key position parsing and search, against a `COMMAND INFO`
//! reply captured from redis-server 7.0.15 and hand-made replies. The
//! `command_keys` integration test checks the same against a live server.

use super::*;
use proptest::prelude::*;

const COMMAND_INFO: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/redis-7.0/command-info.resp"
));

fn captured() -> KeyTable {
    KeyTable::from_command_reply(COMMAND_INFO).unwrap()
}

fn split(cmd: &str) -> Vec<Vec<u8>> {
    // `''` stands for an empty argument.
    cmd.split(' ')
        .map(|a| {
            if a == "''" {
                Vec::new()
            } else {
                a.as_bytes().to_vec()
            }
        })
        .collect()
}

#[test]
fn parses_commands_and_subcommands() {
    let t = captured();
    for name in [
        "get",
        "eval",
        "xread",
        "migrate",
        "sort_ro",
        "xinfo",
        "xinfo|stream",
        "object|encoding",
    ] {
        assert!(t.get(name.as_bytes()).is_some(), "{name} missing");
    }
    assert!(t.get(b"nosuchcommand").is_none(), "nil entries are skipped");
    assert!(t.get(b"GET").is_some(), "lookup ignores case");
    let eval = t.get(b"eval").unwrap();
    assert_eq!(eval.arity, -3);
    assert!(eval
        .flags
        .contains(CmdFlags::MOVABLEKEYS | CmdFlags::NOSCRIPT));
    assert_eq!(eval.legacy, KeyPos::default());
    assert_eq!(
        eval.specs,
        [KeySpec {
            flags: KeyFlags::from_words("RW access update"),
            begin: BeginSearch::Index(2),
            find: FindKeys::Keynum {
                keynumidx: 0,
                firstkey: 1,
                keystep: 1
            },
        }]
    );
    assert!(t.get(b"xinfo").unwrap().container);
    assert!(!t.get(b"xinfo|stream").unwrap().container);
}

#[test]
fn builtin_rows_match_the_captured_reply() {
    let t = captured();
    let mut compared = 0;
    for cmd in t.iter() {
        if let Some(b) = KeyTable::builtin().get(cmd.name.as_bytes()) {
            // The built-in rows carry no ACL categories (they come from the upstream).
            let cmd = CommandKeys {
                acl: AclCats::empty(),
                ..cmd.clone()
            };
            assert_eq!(b, &cmd);
            compared += 1;
        }
    }
    assert!(compared >= 20, "only {compared} rows compared");
}

#[test]
fn builtin_flag_words_are_all_known() {
    for b in builtin::COMMANDS {
        for w in b.flags.split_ascii_whitespace() {
            assert!(
                CmdFlags::from_name(w.as_bytes()).is_some(),
                "{}: {w}",
                b.name
            );
        }
        for (flags, _, _) in b.specs {
            for w in flags.split_ascii_whitespace() {
                assert!(
                    KeyFlags::from_name(w.as_bytes()).is_some(),
                    "{}: {w}",
                    b.name
                );
            }
        }
    }
}

/// (command line, key indices) pairs: what Redis 7.0's `COMMAND GETKEYS` says.
const CASES: &[(&str, &[usize])] = &[
    ("GET k", &[1]),
    ("get k", &[1]),
    ("MSET a 1 b 2", &[1, 3]),
    ("DEL a b c", &[1, 2, 3]),
    ("BLPOP a b 0", &[1, 2]),
    ("RENAME a a", &[1, 2]),
    ("EVAL s 2 a b x", &[3, 4]),
    ("EVAL s 0", &[]),
    ("EVAL s x", &[]),
    ("EVAL s -1 a", &[]),
    ("EVAL s 3 a", &[]),
    ("FCALL f 1 k a", &[3]),
    ("ZUNIONSTORE d 2 a b WEIGHTS 1 2", &[1, 3, 4]),
    ("ZUNIONSTORE d 0 a", &[]),
    ("ZINTER 2 a b", &[2, 3]),
    ("SINTERCARD 2 a b LIMIT 1", &[2, 3]),
    ("LMPOP 2 a b LEFT", &[2, 3]),
    ("BLMPOP 0 2 a b LEFT", &[3, 4]),
    ("XREAD COUNT 2 STREAMS a b 0 0", &[4, 5]),
    ("XREAD STREAMS a 0", &[2]),
    ("xread streams a 0", &[2]),
    ("XREAD COUNT 1 STREAMS a", &[]),
    ("XREAD COUNT 1 BLOCK 0", &[]),
    ("XREADGROUP GROUP g c STREAMS s >", &[5]),
    ("MIGRATE h p k 0 100", &[3]),
    ("MIGRATE h p '' 0 100 KEYS a b", &[7, 8]),
    ("MIGRATE h p '' 0 100 AUTH KEYS KEYS a", &[9]),
    ("MIGRATE h p '' 0 100 AUTH2 u KEYS KEYS a", &[10]),
    ("MIGRATE h p k 0 100 KEYS a", &[]),
    ("SORT k", &[1]),
    ("SORT k BY x STORE d", &[1, 5]),
    ("SORT k GET store STORE d", &[1, 5]),
    ("SORT k STORE d1 STORE d2", &[1, 5]),
    ("SORT k LIMIT 0 1", &[1]),
    ("SORT k STORE", &[1]),
    ("SORT_RO k BY x", &[1]),
    ("GEORADIUS k 0 0 1 m STORE d", &[1, 7]),
    ("XINFO STREAM s", &[2]),
    ("xinfo stream s", &[2]),
    ("OBJECT ENCODING k", &[2]),
    ("SPUBLISH ch msg", &[]),
];

#[test]
fn keys_of_matches_redis() {
    for table in [&captured(), KeyTable::builtin()] {
        for (cmd, want) in CASES {
            let args = split(cmd);
            if table.get(&args[0]).is_none() {
                continue;
            }
            assert_eq!(table.keys_of(&args).as_deref(), Ok(*want), "{cmd}");
        }
    }
    let b = KeyTable::builtin();
    for (cmd, _) in CASES {
        assert!(b.get(&split(cmd)[0]).is_some(), "builtin lacks {cmd}");
    }
}

#[test]
fn sharded_channels_route_like_keys() {
    let t = KeyTable::builtin();
    let args = split("SSUBSCRIBE a b");
    let cmd = t.resolve(&args).unwrap();
    assert_eq!(cmd.keys_of(&args), Ok(vec![]));
    assert_eq!(cmd.routing_args_of(&args), Ok(vec![1, 2]));
    let args = split("SPUBLISH ch msg");
    assert_eq!(
        t.resolve(&args).unwrap().routing_args_of(&args),
        Ok(vec![1])
    );
    let args = split("GET k");
    assert_eq!(
        t.resolve(&args).unwrap().routing_args_of(&args),
        Ok(vec![1])
    );
}

#[test]
fn errors_name_what_redis_names() {
    let t = KeyTable::builtin();
    let none: [&[u8]; 0] = [];
    assert_eq!(t.keys_of(&none), Err(KeyError::Empty));
    assert_eq!(t.keys_of(&split("GET")), Err(KeyError::Arity("get".into())));
    assert_eq!(
        t.keys_of(&split("GET a b")),
        Err(KeyError::Arity("get".into()))
    );
    assert_eq!(
        t.keys_of(&split("XINFO")),
        Err(KeyError::Arity("xinfo".into()))
    );
    assert_eq!(
        t.keys_of(&split("XINFO STREAM")),
        Err(KeyError::Arity("xinfo|stream".into()))
    );
    assert_eq!(
        t.keys_of(&split("XINFO NOPE s")),
        Err(KeyError::UnknownSubcommand {
            command: "XINFO".into(),
            sub: "NOPE".into()
        })
    );
    assert_eq!(
        t.keys_of(&split("NOSUCH a")),
        Err(KeyError::UnknownCommand("NOSUCH".into()))
    );
    let long = vec![b'x'; 100];
    assert!(matches!(
        t.keys_of(&[long]),
        Err(KeyError::UnknownCommand(_))
    ));
    assert_eq!(
        KeyError::Arity("get".into()).to_string(),
        "wrong number of arguments for 'get' command"
    );
}

/// Builds a one-command `COMMAND` reply in RESP2.
fn reply(name: &str, arity: i64, flags: &[&str], legacy: (i64, i64, i64), extra: &str) -> Vec<u8> {
    let mut out = format!(
        "*1\r\n*{}\r\n${}\r\n{name}\r\n:{arity}\r\n*{}\r\n",
        if extra.is_empty() { 6 } else { 9 },
        name.len(),
        flags.len()
    );
    for f in flags {
        out += &format!("+{f}\r\n");
    }
    out += &format!(":{}\r\n:{}\r\n:{}\r\n", legacy.0, legacy.1, legacy.2);
    if !extra.is_empty() {
        out += "*0\r\n*0\r\n";
        out += extra;
    }
    out.into_bytes()
}

#[test]
fn redis6_legacy_triples() {
    // Redis 6: no key specs; first, last (absolute, negative from the end), step.
    let t = KeyTable::from_command_reply(&reply("mset", -3, &["write"], (1, -1, 2), "")).unwrap();
    assert_eq!(t.keys_of(&split("MSET a 1 b 2")), Ok(vec![1, 3]));
    let t = KeyTable::from_command_reply(&reply("lcs", -3, &["readonly"], (1, 2, 1), "")).unwrap();
    assert_eq!(t.keys_of(&split("LCS a b IDX")), Ok(vec![1, 2]));
    let t = KeyTable::from_command_reply(&reply("ping", -1, &[], (0, 0, 0), "")).unwrap();
    assert_eq!(t.keys_of(&split("PING")), Ok(vec![]));
    // A negative arity lets argc fall short of a fixed last key: no keys.
    let t = KeyTable::from_command_reply(&reply("x", -1, &[], (1, 3, 1), "")).unwrap();
    assert_eq!(t.keys_of(&split("X a")), Ok(vec![]));
}

#[test]
fn redis6_movable_keys_borrow_builtin_specs() {
    let r = reply("eval", -3, &["noscript", "movablekeys"], (0, 0, 0), "");
    let t = KeyTable::from_command_reply(&r).unwrap();
    assert_eq!(t.keys_of(&split("EVAL s 2 a b")), Ok(vec![3, 4]));
}

#[test]
fn unknown_spec_shapes_from_newer_servers_mean_no_keys() {
    let spec = "*1\r\n*6\r\n$5\r\nflags\r\n*1\r\n+RW\r\n\
        $12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$6\r\nfuture\r\n$4\r\nspec\r\n*0\r\n\
        $9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*0\r\n";
    let t =
        KeyTable::from_command_reply(&reply("newcmd", -2, &["write"], (1, 1, 1), spec)).unwrap();
    let cmd = t.get(b"newcmd").unwrap();
    assert_eq!(cmd.specs[0].begin, BeginSearch::Unknown);
    assert_eq!(cmd.specs[0].find, FindKeys::Unknown);
    assert_eq!(cmd.keys_of(&split("NEWCMD k")), Ok(vec![]));
}

#[test]
fn bad_replies_are_errors_not_panics() {
    assert!(matches!(
        KeyTable::from_command_reply(b"-NOPERM no\r\n"),
        Err(CommandTableError::ErrorReply(_))
    ));
    for bad in [
        &b"+OK\r\n"[..],
        b"*1\r\n:1\r\n",
        b"*1\r\n*6\r\n$3\r\nget\r\n:x\r\n*0\r\n:1\r\n:1\r\n:1\r\n",
        b"*1\r\n*6\r\n$3\r\nget\r\n:2\r\n:0\r\n:1\r\n:1\r\n:1\r\n",
        b"*1\r\n*6\r\n$3\r\nget\r\n:99999999999\r\n*0\r\n:1\r\n:1\r\n:1\r\n",
        b"*2\r\n",
    ] {
        assert!(
            KeyTable::from_command_reply(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

/// Specs that a broken or hostile upstream could send must not panic or
/// return positions outside the arguments.
#[test]
fn hostile_specs_stay_in_bounds() {
    let specs = [
        (
            BeginSearch::Index(0),
            FindKeys::Range {
                lastkey: 0,
                keystep: 1,
                limit: 0,
            },
        ),
        (
            BeginSearch::Index(-5),
            FindKeys::Range {
                lastkey: 0,
                keystep: 1,
                limit: 0,
            },
        ),
        (
            BeginSearch::Index(1),
            FindKeys::Range {
                lastkey: -1,
                keystep: 0,
                limit: 0,
            },
        ),
        (
            BeginSearch::Index(1),
            FindKeys::Range {
                lastkey: -1,
                keystep: 1,
                limit: -3,
            },
        ),
        (
            BeginSearch::Index(1),
            FindKeys::Range {
                lastkey: i32::MAX,
                keystep: 1,
                limit: 0,
            },
        ),
        (
            BeginSearch::Index(i32::MAX),
            FindKeys::Range {
                lastkey: 0,
                keystep: 1,
                limit: 0,
            },
        ),
        (
            BeginSearch::Index(1),
            FindKeys::Keynum {
                keynumidx: -1,
                firstkey: 1,
                keystep: 1,
            },
        ),
        (
            BeginSearch::Index(1),
            FindKeys::Keynum {
                keynumidx: 0,
                firstkey: -9,
                keystep: 1,
            },
        ),
        (
            BeginSearch::Index(1),
            FindKeys::Keynum {
                keynumidx: i32::MAX,
                firstkey: 1,
                keystep: 1,
            },
        ),
        (
            BeginSearch::Keyword {
                keyword: Cow::Borrowed(b"K"),
                startfrom: 0,
            },
            FindKeys::Range {
                lastkey: 0,
                keystep: 1,
                limit: 0,
            },
        ),
        (
            BeginSearch::Keyword {
                keyword: Cow::Borrowed(b"K"),
                startfrom: i32::MIN,
            },
            FindKeys::Range {
                lastkey: 0,
                keystep: 1,
                limit: 0,
            },
        ),
    ];
    let argss = [
        split("C"),
        split("C K"),
        split("C 2 K a"),
        split("C K K 9 a b"),
    ];
    for (begin, find) in specs {
        let cmd = CommandKeys {
            acl: Default::default(),
            name: "c".into(),
            arity: -1,
            flags: CmdFlags::empty(),
            legacy: KeyPos::default(),
            specs: vec![KeySpec {
                flags: KeyFlags::empty(),
                begin: begin.clone(),
                find,
            }],
            container: false,
        };
        for args in &argss {
            let keys = cmd.keys_of(args).unwrap();
            assert!(
                keys.iter().all(|&k| k >= 1 && k < args.len()),
                "{begin:?} {find:?} {keys:?}"
            );
        }
    }
}

proptest! {
    /// Any arguments to any built-in command: no panic, positions in bounds.
    #[test]
    fn builtin_search_never_panics(
        cmd in 0..builtin::COMMANDS.len(),
        rest in proptest::collection::vec(
            prop_oneof![
                Just(b"STREAMS".to_vec()), Just(b"KEYS".to_vec()), Just(b"STORE".to_vec()),
                Just(b"0".to_vec()), Just(b"1".to_vec()), Just(b"2".to_vec()), Just(b"-1".to_vec()),
                Just(Vec::new()), proptest::collection::vec(any::<u8>(), 0..4),
            ],
            0..10,
        ),
    ) {
        let mut args: Vec<Vec<u8>> = builtin::COMMANDS[cmd].name.split('|').map(|s| s.as_bytes().to_vec()).collect();
        args.extend(rest);
        if let Ok(keys) = KeyTable::builtin().keys_of(&args) {
            prop_assert!(keys.iter().all(|&k| k >= 1 && k < args.len()));
        }
    }
}
