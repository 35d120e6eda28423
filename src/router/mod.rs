//! Routing: which node(s) a request goes to, how a multi-key request is split
//! by slot, and how the parts' replies merge back.

pub mod merge;
