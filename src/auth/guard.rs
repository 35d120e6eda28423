//! Commands that would change the credentials respite itself logs in to
//! Redis with, refused unless the client is an administrator
//! (`auth.users[].admin`, `auth.default_user_admin`): forwarded, they would
//! leave every new upstream connection failing its handshake.
//!
//! Guarded: `CONFIG SET requirepass` (also as one of several parameters),
//! `ACL SETUSER` and `ACL DELUSER` naming respite's upstream user
//! (`upstream.username`, `default` when unset), and `ACL LOAD` (which
//! replaces every user from a file). Redis refuses `CONFIG` and `ACL` inside
//! scripts (`noscript`), so `EVAL`/`FCALL` cannot reach them.

/// Whether a command named `name` may be guarded (a cheap first test).
pub fn concerns(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"config") || name.eq_ignore_ascii_case(b"acl")
}

/// What in `args` would change respite's upstream credentials, if anything.
pub fn changes_credentials(args: &[&[u8]], upstream_user: &str) -> Option<&'static str> {
    let name = args.first()?;
    let sub = args.get(1)?;
    if name.eq_ignore_ascii_case(b"config") && sub.eq_ignore_ascii_case(b"set") {
        let mut i = 2;
        while i < args.len() {
            if args[i].eq_ignore_ascii_case(b"requirepass") {
                return Some("CONFIG SET requirepass");
            }
            i += 2;
        }
        return None;
    }
    if !name.eq_ignore_ascii_case(b"acl") {
        return None;
    }
    let user = upstream_user.as_bytes();
    if sub.eq_ignore_ascii_case(b"setuser") {
        return (args.get(2) == Some(&user)).then_some("ACL SETUSER of respite's upstream user");
    }
    if sub.eq_ignore_ascii_case(b"deluser") {
        return args[2..]
            .contains(&user)
            .then_some("ACL DELUSER of respite's upstream user");
    }
    if sub.eq_ignore_ascii_case(b"load") {
        return Some("ACL LOAD");
    }
    None
}

/// The error line a non-administrator gets.
pub fn refusal(what: &str) -> String {
    format!(
        "NOPERM {what} would change the credentials respite uses to reach Redis; only an administrator client may run it (auth.users[].admin, auth.default_user_admin)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<&[u8]> {
        s.split(' ').map(str::as_bytes).collect()
    }

    #[test]
    fn guarded_commands() {
        let g = |s: &str| changes_credentials(&args(s), "default");
        assert!(g("config set requirepass x").is_some());
        assert!(g("CONFIG SET maxmemory 0 REQUIREPASS x").is_some());
        assert!(g("config set maxmemory requirepass").is_none());
        assert!(g("config get requirepass").is_none());
        assert!(g("acl setuser default on").is_some());
        assert!(g("acl setuser app on").is_none());
        assert!(g("acl deluser app default").is_some());
        assert!(g("acl deluser app").is_none());
        assert!(g("acl load").is_some());
        assert!(g("acl list").is_none());
        assert!(changes_credentials(&args("acl setuser default on"), "respite").is_none());
        assert!(changes_credentials(&args("acl setuser respite on"), "respite").is_some());
    }
}
