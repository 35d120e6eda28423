//! respite: a Redis proxy that unmodified clients talk to as if it were one
//! Redis server.
//!
//! # Layout
//!
//! - [`auth`]: client users, passwords, ACL rules, the administrator role,
//!   the guard on respite's own upstream credentials.
//! - [`cli`]: command-line flags and environment overrides.
//! - [`config`]: the TOML file, defaults and validation into a typed `Config`.
//! - [`protocol`]: RESP framing with limits (requests and replies) and encoders.
//! - [`command`]: the command table (one entry per name: kind, compression class,
//!   statistics, cluster policy) and key positions.
//! - [`error`]: the proxy's error type and its one rendering as a Redis reply.
//! - [`server`]: listeners, worker threads, client sessions, ordered reply queues,
//!   commands answered locally.
//! - [`router`]: how split requests' replies merge back (cluster fan-out).
//! - [`cluster`]: Redis Cluster's key space: hash slots, the slot map, redirections.
//! - [`sentinel`]: sentinel mode: find the primary, follow failovers, move connections.
//! - [`upstream`]: connections to Redis nodes: shared multiplexed ones and pinned ones.
//! - [`net`]: non-blocking socket reads and writes without wasted syscalls.
//! - [`compress`]: transparent lz4 compression of values: the stored format,
//!   request rewriting, reply restoring, byte-level commands.
//! - [`stats`]: per-key heavy hitters, per-command counters and latency
//!   histograms; `KEYSTATS`, `HOTKEYS`, `PROXY INFO`.
//! - [`admin`]: the admin HTTP endpoint on hyper (`/health`, `/ready`, `/metrics`, `/hotkeys`).
//! - [`metrics`]: counters and their exported names.
//! - [`tags`]: the tag commands (`TAGSET`, `TAGINVAL`, ...) and their index in Redis.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod command;
pub mod compress;
pub mod config;
pub mod error;
pub mod metrics;
pub mod net;
pub mod protocol;
pub mod replies;
pub mod router;
pub mod sentinel;
pub mod server;
pub mod stats;
pub mod tags;
pub mod tls;
pub mod upstream;
