//! End-to-end tests: every test runs the real binaries as root on the real kernel.
//!
//! The OCI runtime tests run against capsa-runtime by default; `CAPSA_TEST_RUNTIME=runc` runs
//! them against runc to validate the suite itself.

mod bad_input;
mod build;
mod build_daemon;
mod callers;
mod cgroups;
mod confinement;
mod conformance;
mod console;
mod daemon;
mod differential;
mod engine;
mod exec;
mod hooks;
mod lifecycle;
mod mounts;
mod namespaces;
mod network;
mod process;
mod registries;
mod seccomp;
mod userns;
mod wasm;
