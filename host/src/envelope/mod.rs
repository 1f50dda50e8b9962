//! The envelope: everything a container's init does to itself between `clone` and `exec` —
//! entering namespaces, building the rootfs, pivot_root, the terminal, identity and capabilities —
//! in the order the kernel requires. The runtime side (what the parent does meanwhile) is in
//! `runtime::create`. A process `exec`'d into a running container takes the shorter path of
//! `enter` (join the init's namespaces, then the same identity steps), driven by `runtime::exec`.

pub mod console;
pub mod devices;
pub mod enter;
pub mod exec;
pub mod identity;
pub mod init;
pub mod lsm;
pub mod mount_options;
pub mod mounts;
pub mod namespaces;
pub mod rootfs;
pub mod seccomp;
mod seccomp_enosys;
pub mod sync;
