//! Tags: invalidate every key about one thing with one command.
//!
//! `TAGSET key value [EX|PX|EXAT|PXAT|KEEPTTL] [NX|XX] TAGS tag ...` stores a
//! value as `SET` does and registers the key under its tags; `TAGINVAL tag
//! ...` deletes every key registered under any of them; `TAGKEYS`, `TAGSOF`
//! and `TAGADD` read and extend the index. The contract (syntax, replies, the
//! five guarantees) is `../shared/DESIGN.md`, "Tags"; docs/DESIGN.md says how
//! this module keeps it.
//!
//! - [`layout`]: index key names; a key's entries live in the key's slot.
//! - [`lua`]: the Redis functions that change the index atomically per slot.
//! - [`parse`]: arguments and Redis-worded errors.
//! - [`ops`]: the multi-call commands, run by a task (invalidate, list, add).
//! - [`sweep`]: the rate-limited background prune of dead entries.
//! - [`meta`]: `COMMAND INFO` / `COMMAND DOCS` for the tag commands.
//!
//! The session side (which connection, fast path for `TAGSET`) is
//! `server/session/tags.rs`.

pub mod layout;
pub mod lua;
pub mod meta;
pub mod ops;
pub mod parse;
pub mod sweep;

/// A tag command (or `COMMAND`, answered for the tag names); the command
/// table (`crate::command::table`) routes their names here.
pub use crate::command::TagCmd as Cmd;

/// Test hook, selected by the environment variable
/// `RESPITE_TAGS_BROKEN_ORDER=1`: `TAGSET` registers the key *before*
/// writing it (in a separate call, as hand-made tag schemes do), and cluster
/// confirmations pause between directory and flag. Exists so the race test
/// can show it catches a lost registration; never set it in production.
pub fn broken_order() -> bool {
    static BROKEN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *BROKEN.get_or_init(|| std::env::var("RESPITE_TAGS_BROKEN_ORDER").is_ok_and(|v| v == "1"))
}
