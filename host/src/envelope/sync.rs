//! The messages between the runtime and a container's init while the envelope is built, and
//! between `start` and the waiting init. One message per SOCK_SEQPACKET packet.

use serde::{Deserialize, Serialize};

/// From the runtime (or `start`) to the init.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToInit {
    /// The init's cgroup (and id maps) are in place: go on.
    Continue,
    /// The runtime ran the prestart and createRuntime hooks; `state` is the OCI state JSON the
    /// init hands to the hooks it runs itself.
    HooksDone { state: String },
    /// Run the user process now.
    Start,
}

/// From the init to the runtime (or `start`).
#[derive(Debug, Serialize, Deserialize)]
pub enum FromInit {
    /// A new user namespace exists: write its uid and gid maps (joined-namespace path only).
    WriteIdMaps,
    /// The init is this pid (joined pid namespace: the first child forked the real init).
    InitPid(i32),
    /// Run prestart and createRuntime hooks, then reply with the state.
    RunHooks,
    /// The envelope is built; the init waits for `start`.
    Ready,
    /// A step failed; the message says which and why.
    Failed(String),
}
