//! The `callout` binary: everything lives in the `callout_cli` library; this only hands it the
//! command line and passes its exit code on.

fn main() {
    std::process::exit(callout_cli::main(std::env::args_os()));
}
