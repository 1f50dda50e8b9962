//! Fixtures for capsa's end-to-end tests: real rootfs trees, OCI bundles, the binaries under test
//! and the peers (runc, podman, containerd, a local registry) they are compared with.

pub mod registry;
