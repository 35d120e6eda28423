//! respite: a Redis proxy.
pub mod config;
