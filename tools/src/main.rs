//! `stoker`: tools around the stoker data loader. This file only defines the command line
//! and dispatches to the subcommands.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod args;
mod augment;
mod bench;
mod convert;
mod inspect;
mod open;
mod plan;
mod progress;
mod resize;

#[derive(Parser)]
#[command(
    name = "stoker",
    version,
    about = "Keeps a GPU fed: data loading tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Iterate a data set as a trainer would and report images/s, stage times and consumer wait.
    Bench(bench::BenchArgs),
    /// Pre-resize a folder of images once (parallel, resumable) into a folder or tar shards.
    Resize(resize::ResizeArgs),
    /// Convert a data set between folder, NPY, HDF5 and tar shards (labels carried along).
    Convert(convert::ConvertArgs),
    /// Show a data set's format, samples, shape, dtype, labels and whether its layout is fast.
    Inspect(inspect::InspectArgs),
    /// GPU memory of a training step, the largest batch that fits, accumulation and epoch time.
    Plan(plan::PlanArgs),
    /// Write a PNG grid of augmented samples (the training code path) and their parameters.
    AugmentPreview(augment::PreviewArgs),
}

impl Command {
    /// Whether the subcommand was given `--quiet`.
    fn quiet(&self) -> bool {
        match self {
            Command::Resize(a) => a.quiet,
            Command::Convert(a) => a.quiet,
            Command::Inspect(a) => a.quiet,
            _ => false,
        }
    }
}

/// Library logs on stderr: the level from `RUST_LOG` (default `warn`); `--quiet`: errors only.
fn init_logs(quiet: bool) {
    let filter = if quiet {
        EnvFilter::new("error")
    } else {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"))
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// A closed standard output (`stoker inspect DIR | head -1`) ends the program quietly, as it
/// does other Unix tools, rather than in a panic: Rust ignores SIGPIPE by default, so a write
/// to a closed pipe fails and `println!` panics on it.
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition at start-up, before any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    default_sigpipe();
    let cli = Cli::parse();
    init_logs(cli.command.quiet());
    let r = match cli.command {
        Command::Bench(a) => bench::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Resize(a) => resize::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::AugmentPreview(a) => augment::preview(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stoker: {e}");
            ExitCode::FAILURE
        }
    }
}
