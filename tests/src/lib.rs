//! Fixtures for capsa's end-to-end tests: real rootfs trees, OCI bundles, the binaries under test
//! and the peers (runc, podman, containerd, a local registry) they are compared with.
//!
//! The OCI runtime harness: [`context::TestContext`] is the entry point of a test; it builds
//! [`bundle::Bundle`]s on [`rootfs`] trees, drives the [`runtime::Runtime`] under test
//! (`CAPSA_TEST_RUNTIME=capsa|runc`), runs [`probe::Probe`] payloads and cleans up through
//! [`cleanup::Guard`].

pub mod bundle;
pub mod cleanup;
pub mod console;
pub mod context;
pub mod daemon;
pub mod dockerd;
pub mod engine;
pub mod mountinfo;
pub mod probe;
pub mod registry;
pub mod rootfs;
pub mod runtime;
pub mod token_server;
