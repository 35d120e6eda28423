//! respite: a Redis proxy that unmodified clients talk to as if it were one
//! Redis server.
//!
//! # Layout
//!
//! - [`cli`]: command-line flags and environment overrides.
//! - [`config`]: the TOML file, defaults and validation into a typed `Config`.
//! - [`protocol`]: RESP framing with limits (requests and replies) and encoders.
//! - [`command`]: the command table: what mode each command needs, key positions.
//! - [`server`]: listeners, worker threads, client sessions, ordered reply queues,
//!   commands answered locally.
//! - [`router`]: how split requests' replies merge back (cluster fan-out).
//! - [`cluster`]: Redis Cluster's key space: hash slots, the slot map, redirections.
//! - [`upstream`]: connections to Redis nodes: shared multiplexed ones and pinned ones.
//! - [`net`]: non-blocking socket reads and writes without wasted syscalls.
//! - [`stats`]: per-key heavy hitters, per-command counters and latency
//!   histograms; `KEYSTATS`, `HOTKEYS`, `PROXY INFO`.
//! - [`admin`]: the admin HTTP server (`/health`, `/ready`, `/metrics`).
//! - [`metrics`]: counters and their exported names.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod command;
pub mod config;
pub mod metrics;
pub mod net;
pub mod protocol;
pub mod router;
pub mod server;
pub mod stats;
pub mod upstream;
