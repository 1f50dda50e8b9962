//! Links `capsa-runtime` and `capsa-monitor` as position-dependent executables (`-no-pie`).
//!
//! Why: a position-independent executable is relocated by the dynamic loader at every start,
//! and capsa-runtime starts once per container. Its ~29,000 relative relocations write ~110 pages
//! of `.data.rel.ro`, each a copy-on-write page fault before `main` (the init, cloned from it,
//! pays again for the pages it touches): about a millisecond of a 5-10 ms container start on the
//! machines measured here (bench/README.md). A fixed-address executable has none of that. The
//! trade is ASLR of the runtime's own image, for a short-lived process whose only input is its
//! caller's bundle (runc's Go binaries are position-dependent too).
//!
//! `capsa-monitor` is linked the same way, for memory: one monitor stays resident per container,
//! and a PIE monitor relocated ~28,700 pointers into ~460 KB of `.data.rel.ro` in every one of
//! them, private dirty memory that was more than half of each monitor's own (USS). Its inputs are
//! the container's output and connections to a socket only root can open in the state dir; the
//! per-container shims of containerd and Docker (Go, `buildmode=exe`) are position-dependent too.
//! The daemon and the CLI, which parse what arrives over a network, stay position-independent.
fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os == "linux" && target_env == "gnu" {
        println!("cargo:rustc-link-arg-bin=capsa-runtime=-no-pie");
        println!("cargo:rustc-link-arg-bin=capsa-monitor=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
