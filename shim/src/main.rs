//! `capsa-shim`: see the library's docs for the contract. Everything happens in
//! [`capsa_shim::run::main`]; this only hands it the process's arguments and environment.

fn main() {
    let code = capsa_shim::run::main(std::env::args_os().skip(1), std::env::vars_os().collect());
    std::process::exit(code);
}
