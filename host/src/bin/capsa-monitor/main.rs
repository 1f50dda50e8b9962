//! capsa-monitor: the process that stays with one container (conmon's role) — or runs one
//! `exec` for the daemon. Started by `capsa` and `capsad`, never by hand; its command line is
//! the contract in `capsa_host::engine::monitor`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(capsa_host::engine::monitor::main_with_args(&args));
}
