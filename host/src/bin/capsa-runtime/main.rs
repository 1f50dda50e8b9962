//! capsa-runtime: an OCI runtime with runc's command line, so podman, containerd and anything else
//! that drives runc can drive capsa. Each command is a thin call into `capsa_host::runtime`.

mod cli;
mod logger;
mod report;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    capsa_host::runtime::timing::begin();
    let cli = cli::Cli::parse();
    if let Err(e) = logger::install(cli.log.as_deref(), cli.log_format, cli.debug) {
        eprintln!("capsa-runtime: {e:#}");
        return ExitCode::from(1);
    }
    capsa_host::runtime::timing::mark("command line parsed, logger installed");
    match cli::dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let message = format!("{e:#}");
            log::error!("{message}");
            eprintln!("capsa-runtime: {message}");
            ExitCode::from(1)
        }
    }
}
