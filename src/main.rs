//! The `stampd` binary: the command line lives in [`stampd::cli`].
#![forbid(unsafe_code)]

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    stampd::cli::main()
}
