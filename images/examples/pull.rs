//! `pull STORE REF [--platform OS/ARCH] [-q]`: the library's pull, as the `capsa pull` command
//! will run it; bench/pull.sh times it against skopeo + umoci and podman.

use std::process::ExitCode;

use capsa_images::Store;
use capsa_images::registry::{RegistryOptions, pull_command};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut platform = None;
    let mut quiet = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-q" => quiet = true,
            "--platform" => platform = args.next(),
            _ => positional.push(arg),
        }
    }
    let [root, reference] = positional.as_slice() else {
        eprintln!("usage: pull STORE REF [--platform OS/ARCH] [-q]");
        return ExitCode::from(2);
    };
    let result = Store::open(root)
        .map_err(capsa_images::registry::Error::from)
        .and_then(|store| {
            pull_command(
                &store,
                reference,
                platform.as_deref(),
                quiet,
                &RegistryOptions::default(),
            )
        });
    match result {
        Ok(report) => {
            if !quiet {
                println!("{}", report.id);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pull: {e}");
            ExitCode::FAILURE
        }
    }
}
