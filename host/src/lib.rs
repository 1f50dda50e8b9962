//! capsa-host: the container envelope as a library.
//!
//! A container is built in two halves that meet over a socket: the runtime side
//! ([`runtime`]: state, cgroup, hooks, lifecycle) and the init side ([`envelope`]: namespaces,
//! rootfs, identity, exec), which runs in the cloned child. [`spec`] validates the bundle before
//! either starts; [`cgroups`] and [`sys`] are the layers they stand on. The `capsa-runtime`
//! binary is a thin CLI over [`runtime`].

#![recursion_limit = "256"]

pub mod cgroups;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod hooks;
pub mod runtime;
pub mod spec;
pub mod sys;
pub mod wasm;

pub use error::{Error, Result};
