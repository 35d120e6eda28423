//! Client authentication and permissions: the users of `[auth]`, their
//! passwords (compared as SHA-256 digests in constant time), their Redis
//! ACL rules ([`acl`]) checked before a command is forwarded, the
//! administrator role, and the guard that keeps a non-administrator from
//! changing the credentials respite itself logs in to Redis with
//! ([`guard`]).
//!
//! The users live behind a lock so a configuration reload replaces them
//! without touching connected clients: a session keeps only its user's
//! name and looks the user up when a command needs its rules.

pub mod acl;
pub mod guard;

use crate::command::table::{self, AclLookup};
use crate::config::AuthConfig;
use crate::server::Ctx;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A SHA-256 written as 64 hexadecimal digits (Redis's `#<hash>`).
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// One user as the proxy checks it.
#[derive(Debug)]
pub struct User {
    pub name: String,
    /// `None`: no password accepted (the default user without `password`
    /// while named users exist, Redis's disabled default user).
    password: Option<[u8; 32]>,
    pub rules: acl::Rules,
    /// No rules given: every command, key and channel.
    pub unrestricted: bool,
    pub admin: bool,
}

/// The configured users.
#[derive(Debug)]
pub struct Users {
    /// Clients must authenticate before anything else.
    pub required: bool,
    /// No password for the default user and no named users: `AUTH pw`
    /// answers Redis's "no password configured" error.
    pub no_passwords: bool,
    by_name: HashMap<String, Arc<User>>,
    /// A user was named whom the rules of no configured user allow: a
    /// session whose user was removed by a reload gets these.
    removed: Arc<User>,
}

impl Users {
    pub fn from_config(auth: &AuthConfig) -> Users {
        let mut by_name = HashMap::new();
        let required = auth.password.is_some() || !auth.users.is_empty();
        // Redis's `nopass` default user when nothing is configured;
        // disabled when only named users are.
        let default_password = auth.password.as_ref().map(|p| sha256(p.as_bytes()));
        by_name.insert(
            "default".to_string(),
            Arc::new(User {
                name: "default".into(),
                password: default_password,
                rules: acl::Rules::all(),
                unrestricted: true,
                admin: auth.default_user_admin,
            }),
        );
        for u in &auth.users {
            by_name.insert(
                u.name.clone(),
                Arc::new(User {
                    name: u.name.clone(),
                    password: Some(u.password_sha256),
                    unrestricted: u.rules.is_none(),
                    rules: u.rules.clone().unwrap_or_else(acl::Rules::all),
                    admin: u.admin,
                }),
            );
        }
        let mut removed = acl::Rules::parse("").unwrap_or_else(|_| acl::Rules::all());
        removed.enabled = false;
        Users {
            required,
            no_passwords: !required,
            by_name,
            removed: Arc::new(User {
                name: String::new(),
                password: None,
                rules: removed,
                unrestricted: false,
                admin: false,
            }),
        }
    }

    /// Whether some user has rules (the permission check has work to do).
    fn restricted(&self) -> bool {
        self.by_name.values().any(|u| !u.unrestricted)
    }

    /// The user named `name`; a user with no permissions if there is none
    /// (removed by a reload while its clients stay connected).
    pub fn get(&self, name: &str) -> Arc<User> {
        self.by_name
            .get(name)
            .cloned()
            .unwrap_or_else(|| self.removed.clone())
    }

    pub fn exists(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Whether `pass` is `user`'s password: the guess's SHA-256 compared
    /// with the stored one in constant time, and the same work done for a
    /// user that does not exist, so timing tells neither the password nor
    /// whether the user exists. A disabled user (`off`) never logs in.
    pub fn check(&self, user: &[u8], pass: &[u8]) -> bool {
        let guess = sha256(pass);
        let found = std::str::from_utf8(user)
            .ok()
            .and_then(|u| self.by_name.get(u));
        match found {
            Some(u) => match &u.password {
                Some(stored) => crate::server::local::secret_eq(stored, &guess) && u.rules.enabled,
                // The default user with no password at all (no auth
                // configured) takes any password, as Redis's `nopass`.
                None => {
                    let _ = crate::server::local::secret_eq(&[0; 32], &guess);
                    self.no_passwords
                }
            },
            None => {
                let _ = crate::server::local::secret_eq(&[0; 32], &guess);
                false
            }
        }
    }
}

/// The users, replaced as a whole on reload.
#[derive(Debug)]
pub struct Auth {
    users: RwLock<Arc<Users>>,
    /// Some user has rules: requests are checked (one load per request
    /// otherwise).
    restricted: AtomicBool,
    /// Clients must authenticate.
    required: AtomicBool,
}

impl Auth {
    pub fn new(config: &AuthConfig) -> Auth {
        let users = Users::from_config(config);
        Auth {
            restricted: AtomicBool::new(users.restricted()),
            required: AtomicBool::new(users.required),
            users: RwLock::new(Arc::new(users)),
        }
    }

    /// Apply a reloaded `[auth]`: new logins use it, and connected clients'
    /// next commands are checked against their user's new rules.
    pub fn replace(&self, config: &AuthConfig) {
        let users = Users::from_config(config);
        self.restricted.store(users.restricted(), Ordering::Release);
        self.required.store(users.required, Ordering::Release);
        *self.users.write() = Arc::new(users);
    }

    pub fn users(&self) -> Arc<Users> {
        self.users.read().clone()
    }

    /// Whether a new client must authenticate first.
    pub fn required(&self) -> bool {
        self.required.load(Ordering::Acquire)
    }

    pub fn restricted(&self) -> bool {
        self.restricted.load(Ordering::Acquire)
    }
}

/// What the session does with a request after the permission check.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on as usual.
    Pass,
    /// Answer this error line (no `-`, no CRLF) instead.
    Refuse(String),
    /// Answer this reply (RESP bytes) instead: `ACL WHOAMI`.
    Answer(bytes::Bytes),
}

/// Redis's `-NOPERM` texts: 7.0's, or those of 7.2 and later.
fn noperm(ctx: &Ctx, user: &str, denied: acl::Denied, name: &str) -> String {
    let v = ctx.server_version();
    let old = v.starts_with("6.") || v.starts_with("7.0.");
    match (denied, old) {
        (acl::Denied::Command, true) => {
            format!("NOPERM this user has no permissions to run the '{name}' command")
        }
        (acl::Denied::Key, true) => {
            "NOPERM this user has no permissions to access one of the keys used as arguments".into()
        }
        (acl::Denied::Channel, true) => {
            "NOPERM this user has no permissions to access one of the channels used as arguments"
                .into()
        }
        (acl::Denied::Command, false) => {
            format!("NOPERM User {user} has no permissions to run the '{name}' command")
        }
        (acl::Denied::Key, false) => "NOPERM No permissions to access a key".into(),
        (acl::Denied::Channel, false) => "NOPERM No permissions to access a channel".into(),
    }
}

/// Check one request of the client logged in as `user`, before it is
/// forwarded or answered: the user's ACL rules, then the credential guard,
/// and `ACL WHOAMI` (answered with the proxy-side user's name). Cheap for
/// the commands neither concerns: a name comparison and one atomic load.
pub fn check(ctx: &Ctx, user: &str, info: &crate::command::Info, args: &[&[u8]]) -> Verdict {
    let Some(name) = args.first() else {
        return Verdict::Pass;
    };
    let guarded = guard::concerns(name);
    let whoami = name.eq_ignore_ascii_case(b"acl")
        && args.len() == 2
        && args[1].eq_ignore_ascii_case(b"whoami");
    let restricted = ctx.auth.restricted();
    if !guarded && !restricted {
        return Verdict::Pass;
    }
    let users = ctx.auth.users();
    let u = users.get(user);
    if !u.unrestricted {
        // AUTH, HELLO and the like (Redis's `no_auth` flag) are never refused.
        let no_auth = matches!(
            info.kind,
            crate::command::Kind::Local(
                crate::command::Local::Auth
                    | crate::command::Local::Hello
                    | crate::command::Local::Quit
                    | crate::command::Local::Reset
            )
        );
        if !no_auth {
            match table::acl_lookup(info, args) {
                AclLookup::Own { name, cats, keys } => {
                    if let Err(d) = u.rules.check(name, cats, args, &keys) {
                        return Verdict::Refuse(noperm(ctx, user, d, name));
                    }
                }
                AclLookup::Redis { name, cats, keys } => {
                    if let Err(d) = u.rules.check(&name, cats, args, &keys) {
                        return Verdict::Refuse(noperm(ctx, user, d, &name));
                    }
                }
                AclLookup::RedisRejects => {}
                AclLookup::NotYetKnown => {
                    return Verdict::Refuse(
                        "NOPERM respite does not know the upstream's command table yet (COMMAND), so it cannot check this user's rules; try again".into(),
                    );
                }
            }
        }
    }
    if guarded && !u.admin {
        let upstream_user = ctx.config.upstream.username.as_deref().unwrap_or("default");
        if let Some(what) = guard::changes_credentials(args, upstream_user) {
            return Verdict::Refuse(guard::refusal(what));
        }
    }
    if whoami {
        let mut out = bytes::BytesMut::new();
        crate::protocol::encode::bulk(&mut out, user.as_bytes());
        return Verdict::Answer(out.freeze());
    }
    Verdict::Pass
}

/// Learn the upstream's command table (`COMMAND`) for the permission
/// check, on worker 0 in standalone and sentinel mode (cluster mode learns
/// it with its topology). Retried until it succeeds; needed only while some
/// user has rules.
pub async fn learn_commands(ctx: Arc<Ctx>, worker: Arc<crate::server::Worker>) {
    let mut wait = std::time::Duration::from_millis(100);
    loop {
        if ctx.is_shutting_down() {
            return;
        }
        if ctx.auth.restricted() && table::upstream().is_none() {
            if let Some(control) = worker.node().control() {
                let mut req = bytes::BytesMut::new();
                crate::protocol::encode::command(&mut req, &[b"COMMAND".as_slice()]);
                match control.call(req.freeze()).await {
                    Ok(reply) => match crate::command::keys::KeyTable::from_command_reply(&reply) {
                        Ok(t) if !t.is_empty() => {
                            table::learn_upstream(Arc::new(t));
                            tracing::debug!("learned the upstream's command table");
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(error = %e, "COMMAND not understood"),
                    },
                    Err(e) => tracing::debug!(error = %e, "COMMAND failed"),
                }
            }
        } else if table::upstream().is_some() {
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(2));
    }
}
