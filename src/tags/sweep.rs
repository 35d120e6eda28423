//! The background sweep (placeholder, filled below).
