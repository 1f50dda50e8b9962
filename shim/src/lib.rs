//! capsa-shim: the wasm payload that `capsa-runtime` execs inside a container's envelope instead of
//! a native binary. Its content arrives with the wasm issue; the crate exists so the workspace's
//! shape (host, shim, images, tests) is fixed from the start.
