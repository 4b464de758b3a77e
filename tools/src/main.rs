//! `stoker`: the command line of [`stoker_tools`], as a program.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(stoker_tools::run(std::env::args_os()).clamp(0, 255) as u8)
}
