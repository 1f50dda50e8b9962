//! Container lifecycle operations on top of the envelope: create, start, run, kill, delete, state,
//! list and ps, with the state kept under a state root. The `capsa-runtime` CLI is a thin layer
//! over these; the engine will call the same functions.

mod create;
mod delete;
mod kill;
mod run;
mod start;
pub mod state;
mod tty;

pub use create::{CreateOptions, Created, create};
pub use delete::delete;
pub use kill::{kill, parse_signal};
pub use run::run;
pub use start::start;
pub use state::{Record, StateRoot, Status};

/// Where `start` finds a created container's init: a socket in the container's state directory.
pub(crate) const START_SOCKET: &str = "start.sock";
