//! Docker's Engine API shapes, computed by the engine: what the daemon serves and what the CLI
//! prints, locally or from a daemon. The HTTP layer (capsad) only moves these over the wire;
//! nothing here knows about HTTP.
//!
//! - [`create`]: the container create body to `RunOptions` and back.
//! - [`containers`], [`images`], [`stats`], [`system`]: the JSON objects of the list, inspect,
//!   stats, version, info and df endpoints.
//! - [`filters`]: the `filters` query parameter. [`time`]: Docker's times and durations.

pub mod containers;
pub mod create;
pub mod filters;
pub mod images;
pub mod networks;
pub mod stats;
pub mod system;
pub mod time;

/// The newest Engine API version capsa speaks (what `/_ping` and `/version` announce).
pub const API_VERSION: &str = "1.47";
/// The oldest one it accepts (as dockerd's minimum).
pub const MIN_API_VERSION: &str = "1.24";
/// The engine's version, as `docker version` shows it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
