//! A user's permissions in Redis ACL syntax (`ACL SETUSER`'s rules), checked
//! by the proxy before a command is forwarded.
//!
//! Rules apply in order, as `ACL SETUSER` applies them: for a command the
//! last rule that names it (itself, its container, or one of its
//! categories) decides, starting from "denied". `allcommands` / `+@all`
//! allow everything, `nocommands` / `-@all` nothing. Key patterns (`~p`,
//! `allkeys`, `resetkeys`) are checked against every key the command
//! names; channel patterns (`&p`, `allchannels`, `resetchannels`) against
//! the channels of the publish and subscribe commands. As in Redis 7, a
//! user starts with no commands, no keys and no channels. Not supported
//! (refused when the file is read): selectors `(...)`, read/write key
//! permissions `%R~`/`%W~`, and passwords inside the rules (`>pw`, `#hash`:
//! use `password` / `password_sha256`).

use crate::command::keys::AclCats;
use crate::compress::glob;

/// One command rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CmdRule {
    /// `allcommands`, `+@all` (true) / `nocommands`, `-@all` (false).
    All(bool),
    /// `+@cat` / `-@cat`.
    Cat(bool, AclCats),
    /// `+name` / `-name` (lowercase; `name|sub` for one subcommand).
    Name(bool, String),
}

/// A user's permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// `off`: the user cannot log in.
    pub enabled: bool,
    cmds: Vec<CmdRule>,
    /// `None`: every key (`allkeys`, `~*`).
    keys: Option<Vec<Vec<u8>>>,
    /// `None`: every channel (`allchannels`, `&*`).
    channels: Option<Vec<Vec<u8>>>,
}

/// Why a command is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Command,
    Key,
    Channel,
}

impl Rules {
    /// Everything allowed (a user without `rules`).
    pub fn all() -> Rules {
        Rules {
            enabled: true,
            cmds: vec![CmdRule::All(true)],
            keys: None,
            channels: None,
        }
    }

    /// Parse space-separated rules; the error names the first bad one.
    pub fn parse(text: &str) -> Result<Rules, String> {
        let mut r = Rules {
            enabled: true,
            cmds: Vec::new(),
            keys: Some(Vec::new()),
            channels: Some(Vec::new()),
        };
        for word in text.split_ascii_whitespace() {
            let lower = word.to_ascii_lowercase();
            match lower.as_str() {
                "on" => r.enabled = true,
                "off" => r.enabled = false,
                "allcommands" | "+@all" => r.cmds.push(CmdRule::All(true)),
                "nocommands" | "-@all" => r.cmds.push(CmdRule::All(false)),
                "allkeys" | "~*" => r.keys = None,
                "resetkeys" => r.keys = Some(Vec::new()),
                "allchannels" | "&*" => r.channels = None,
                "resetchannels" => r.channels = Some(Vec::new()),
                "reset" => {
                    r = Rules::parse("")?;
                }
                "nopass" | "resetpass" => {
                    return Err(format!(
                        "{word:?}: passwords are set with password / password_sha256"
                    ))
                }
                _ => {
                    let first = word.as_bytes()[0];
                    match first {
                        b'~' => {
                            if let Some(k) = &mut r.keys {
                                k.push(word.as_bytes()[1..].to_vec());
                            }
                        }
                        b'&' => {
                            if let Some(c) = &mut r.channels {
                                c.push(word.as_bytes()[1..].to_vec());
                            }
                        }
                        b'+' | b'-' => {
                            let allow = first == b'+';
                            let rest = &lower[1..];
                            if let Some(cat) = rest.strip_prefix('@') {
                                let Some(c) = AclCats::from_name(cat.as_bytes()) else {
                                    return Err(format!("{word:?}: unknown command category"));
                                };
                                r.cmds.push(CmdRule::Cat(allow, c));
                            } else if rest.is_empty() || rest.contains(char::is_whitespace) {
                                return Err(format!("{word:?}: no command name"));
                            } else {
                                r.cmds.push(CmdRule::Name(allow, rest.to_string()));
                            }
                        }
                        b'%' => {
                            return Err(format!(
                                "{word:?}: read/write key permissions (%R~, %W~) are not supported; use ~pattern"
                            ))
                        }
                        b'(' => {
                            return Err(format!("{word:?}: selectors are not supported"));
                        }
                        b'>' | b'<' | b'#' | b'!' => {
                            return Err(format!(
                                "a password rule ({}...): passwords are set with password / password_sha256",
                                first as char
                            ))
                        }
                        _ => return Err(format!("{word:?}: not an ACL rule")),
                    }
                }
            }
        }
        Ok(r)
    }

    /// Whether the command `name` (`get`, `config|set`) of categories `cats`
    /// may run.
    pub fn allows_command(&self, name: &str, cats: AclCats) -> bool {
        let container = name.split('|').next().unwrap_or(name);
        let mut allowed = false;
        for rule in &self.cmds {
            match rule {
                CmdRule::All(a) => allowed = *a,
                CmdRule::Cat(a, c) => {
                    if cats.intersects(*c) {
                        allowed = *a;
                    }
                }
                CmdRule::Name(a, n) => {
                    if n == name || n == container {
                        allowed = *a;
                    }
                }
            }
        }
        allowed
    }

    pub fn allows_key(&self, key: &[u8]) -> bool {
        match &self.keys {
            None => true,
            Some(patterns) => patterns.iter().any(|p| glob::matches(p, key)),
        }
    }

    /// A channel (`literal`) or, for `PSUBSCRIBE`, a pattern, which must be
    /// one of the user's patterns as written (as Redis checks patterns).
    pub fn allows_channel(&self, channel: &[u8], is_pattern: bool) -> bool {
        match &self.channels {
            None => true,
            Some(patterns) if is_pattern => patterns.iter().any(|p| p == channel),
            Some(patterns) => patterns.iter().any(|p| glob::matches(p, channel)),
        }
    }

    /// Check a command: its name, categories, key and channel arguments.
    pub fn check(
        &self,
        name: &str,
        cats: AclCats,
        args: &[&[u8]],
        keys: &[usize],
    ) -> Result<(), Denied> {
        if !self.allows_command(name, cats) {
            return Err(Denied::Command);
        }
        if keys
            .iter()
            .any(|&i| args.get(i).is_some_and(|k| !self.allows_key(k)))
        {
            return Err(Denied::Key);
        }
        let (channels, is_pattern): (&[&[u8]], bool) = match name {
            "publish" | "spublish" if args.len() >= 2 => (&args[1..2], false),
            "subscribe" | "ssubscribe" => (&args[1..], false),
            "psubscribe" => (&args[1..], true),
            _ => (&[], false),
        };
        if channels.iter().any(|c| !self.allows_channel(c, is_pattern)) {
            return Err(Denied::Channel);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats(s: &str) -> AclCats {
        AclCats::from_at_words(s)
    }

    #[test]
    fn rules_apply_in_order() {
        let r = Rules::parse("+@read -@dangerous +keys ~cache:*").unwrap();
        assert!(r.allows_command("get", cats("@read @string @fast")));
        assert!(!r.allows_command("set", cats("@write @string @slow")));
        // -@dangerous after +@read, then +keys by name.
        assert!(r.allows_command("keys", cats("@keyspace @read @slow @dangerous")));
        let r = Rules::parse("+@all -config|set").unwrap();
        assert!(r.allows_command("config|get", cats("@admin @slow @dangerous")));
        assert!(!r.allows_command("config|set", cats("@admin @slow @dangerous")));
        let r = Rules::parse("-@all +config").unwrap();
        assert!(r.allows_command("config|set", cats("@admin")));
        let r = Rules::parse("").unwrap();
        assert!(!r.allows_command("ping", cats("@fast @connection")));
        assert!(Rules::all().allows_command("anything", AclCats::empty()));
    }

    #[test]
    fn keys_and_channels() {
        let r = Rules::parse("+@all ~cache:* &news.*").unwrap();
        let args: Vec<&[u8]> = vec![b"mget", b"cache:1", b"other"];
        assert_eq!(
            r.check("mget", cats("@read"), &args, &[1, 2]),
            Err(Denied::Key)
        );
        assert_eq!(r.check("mget", cats("@read"), &args, &[1]), Ok(()));
        let sub: Vec<&[u8]> = vec![b"subscribe", b"news.a", b"sport"];
        assert_eq!(
            r.check("subscribe", cats("@pubsub"), &sub, &[]),
            Err(Denied::Channel)
        );
        let psub: Vec<&[u8]> = vec![b"psubscribe", b"news.*"];
        assert_eq!(r.check("psubscribe", cats("@pubsub"), &psub, &[]), Ok(()));
        let psub: Vec<&[u8]> = vec![b"psubscribe", b"news.a*"];
        assert_eq!(
            r.check("psubscribe", cats("@pubsub"), &psub, &[]),
            Err(Denied::Channel)
        );
        let r = Rules::parse("allkeys allchannels allcommands").unwrap();
        assert_eq!(r.check("subscribe", cats("@pubsub"), &sub, &[]), Ok(()));
    }

    #[test]
    fn bad_rules_are_named() {
        for (text, needle) in [
            ("+@nosuch", "unknown command category"),
            ("%R~x", "not supported"),
            (">pw", "password"),
            ("(~x +get)", "selectors"),
            ("bogus", "not an ACL rule"),
            ("+", "no command name"),
        ] {
            let e = Rules::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
        assert!(!Rules::parse("off +@all").unwrap().enabled);
    }
}
