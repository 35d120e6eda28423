//! respite: a Redis proxy.
pub mod admin;
pub mod config;
