//! Integration tests: the public API and the `custody` binary on 127.0.0.1.
//!
//! One test binary (faster to link); one module per area.

// Tests drive real time: they read the clock and sleep.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod cluster;
// The `custody` binary is built with the `cli` feature only.
#[cfg(feature = "cli")]
mod process;
mod tasks;
mod util;
