//! The `llmwatch` binary: parse the command line and run it. Everything else is in the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    llmwatch::cli::main(llmwatch::cli::Cli::parse())
}
