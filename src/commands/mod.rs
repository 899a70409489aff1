//! The commands that run once and exit, each in its own file: `stamp`, `trace`, `release`,
//! and `webhook-config`. The long-running ones (`webhook`, `controller`, `run`) are
//! [`crate::wiring`]'s.

pub mod release;
pub mod stamp;
pub mod trace;
pub mod webhook_config;
