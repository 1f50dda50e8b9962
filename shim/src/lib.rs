//! capsa-shim: the wasm payload of a capsa container. `capsa-runtime` builds the container's
//! envelope (namespaces, cgroup, rootfs, identity, seccomp) and then, for a wasm program, execs
//! this binary instead of a native one. The shim runs a module the host compiled ahead of time:
//! it never compiles (its wasmtime has no Cranelift), it only maps the artifact and runs it.
//!
//! # The contract (host → shim)
//!
//! `capsa-shim [OPTIONS] -- ARG0 [ARGS...]`, exec'd as the container's process (already in its
//! namespaces, with its identity and cwd, stdio inherited), with exactly the container's
//! `process.env` as environment. `ARG0 [ARGS...]` are `process.args`; the environment becomes the
//! module's and never configures the shim (nothing reads `RUST_LOG`, `WASMTIME_*`, …).
//!
//! | option | meaning |
//! | --- | --- |
//! | `--artifact-fd N` | required: inherited read-only descriptor (≥ 3) of the precompiled artifact |
//! | `--component` | the artifact is a component (WASI preview 2 `wasi:cli/command`); else a core module (preview 1, `_start`) |
//! | `--preopen GUEST=HOST[:ro\|:rw]` | repeatable: directory `HOST` preopened as `GUEST` (writable without a suffix) |
//! | `--memory-limit BYTES` | no linear memory grows past BYTES: `memory.grow` returns -1 |
//! | `--deadline-ms MS` | wall-clock limit from the shim's start |
//! | `--wasm-feature NAME=on\|off` | repeatable: see [`engine::FEATURE_NAMES`]; must match the host's compilation |
//! | `--inherit-network` | WASI sockets may use the container's network (and name lookup) |
//!
//! Exit status: the module's `proc_exit` code; 0 when `_start` (or `wasi:cli/run`) returns, 1
//! when `wasi:cli/run` returns its error; 134 after a trap (reported with the wasm backtrace);
//! 127 when it cannot be run at all (bad command line, invalid or foreign artifact, missing
//! import, no `_start`); 124 when the deadline passed (`capsa-shim: deadline of MS ms exceeded`);
//! 143 / 130 after SIGTERM / SIGINT. When a memory growth was refused and the module then failed,
//! the shim says so.
//!
//! # The engine configuration
//!
//! [`engine::engine_config`] is the one configuration both sides use: the host precompiles with
//! it, the shim deserializes with it, so wasmtime's compatibility checks pass. The host gets it
//! with `capsa-shim = { path = "../shim", default-features = false }` (without the `run` feature
//! the library is only [`engine`], and WASI is not built into the host).
//! [`engine::compatibility_key`] is the host's cache key part; it takes an `Engine` (not a
//! `Config`) because wasmtime's hash is computed from an engine, including its compiler.

pub mod engine;
#[cfg(feature = "run")]
pub mod interrupt;
#[cfg(feature = "run")]
pub mod options;
#[cfg(feature = "run")]
pub mod run;

#[cfg(feature = "compile")]
pub use engine::compatibility_key;
pub use engine::{Features, engine_config};
