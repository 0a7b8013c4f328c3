//! The `llmwatch` binary: parse the command line and run it. Everything else is in the library.

use clap::Parser;

// Ingest allocates many short-lived strings and JSON values across threads; glibc malloc spent
// about 30% of server CPU there (perf, ingest benchmark). mimalloc handles this pattern well.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    llmwatch::cli::main(llmwatch::cli::Cli::parse())
}
