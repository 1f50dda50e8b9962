//! Container lifecycle operations on top of the envelope: create, start, run, exec, kill, delete,
//! state, list and ps, with the state kept under a state root. The `capsa-runtime` CLI is a thin layer
//! over these; the engine will call the same functions.

mod control;
mod create;
mod delete;
mod events;
mod exec;
mod kill;
mod ps;
mod run;
mod start;
pub mod state;
pub mod timing;
mod tty;

pub use control::{pause, resume, update};
pub use create::{CreateOptions, Created, create, create_holding_terminal};
pub use delete::delete;
pub use events::{events, parse_interval};
pub use exec::{ExecOptions, ProcessFlags, ProcessSource, UserSpec, exec, parse_capability};
pub use kill::{kill, parse_signal};
pub use ps::ps_table;
pub use run::run;
pub use start::start;
pub use state::{Record, StateRoot, Status};

/// Where `start` finds a created container's init: a socket in the container's state directory.
pub(crate) const START_SOCKET: &str = "start.sock";
