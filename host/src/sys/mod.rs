//! The thin system-call layer: small wrappers over calls that nix does not cover (clone3, pidfd,
//! keyctl) and fd-relative file helpers. Policy lives elsewhere; these only do the call and name
//! what they acted on in their errors.

pub mod clone;
pub mod fs;
pub mod pidfd;
pub mod proc;
pub mod socket;
pub mod userns;
