//! respite: a Redis proxy.
pub mod config;
pub mod protocol;
