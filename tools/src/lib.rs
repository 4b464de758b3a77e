//! `stoker`: tools around the stoker data loader, as a library: the command line
//! ([`run`], which the `stoker` binary and the Python package's `stoker` command call) and the
//! reports the Python package returns as data ([`plan_json`]).

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use std::io::IsTerminal;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod args;
mod augment;
mod bench;
mod convert;
mod hdf5_out;
mod inspect;
mod open;
mod output;
mod part;
mod plan;
mod progress;
mod resize;

use std::ffi::OsString;

#[derive(Parser)]
#[command(
    name = "stoker",
    version,
    about = "Keeps a GPU fed: data loading tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Where shards of an s3:// data set are downloaded and mapped from (default:
    /// $STOKER_CACHE_DIR, $XDG_CACHE_HOME/stoker or ~/.cache/stoker); shared by the processes
    /// of a node.
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<std::path::PathBuf>,
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

/// Runs the `stoker` command with `args` (the program name first, as `std::env::args_os`
/// gives them) and returns its exit status: 0 on success, 1 on an error (printed on stderr as
/// `stoker: MESSAGE`), clap's status for a usage error of the command line (2, or 0 for
/// `--help` and `--version`, whose text goes to stdout).
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    default_sigpipe();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    init_logs(cli.command.quiet());
    open::set_cache_dir(cli.cache_dir.clone());
    let r = match cli.command {
        Command::Bench(a) => bench::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Resize(a) => resize::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::AugmentPreview(a) => augment::preview(a),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("stoker: {e}");
            1
        }
    }
}

/// The JSON report of `stoker plan ARGS --json` (`args` without the program name and the
/// subcommand, e.g. `["--preset", "resnet18", "--input", "224x224x3", "--gpu-memory",
/// "12GiB"]`), as a string; a bad argument is a usage error with clap's message.
pub fn plan_json<I, T>(args: I) -> stoker::Result<String>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    #[derive(Parser)]
    #[command(name = "stoker plan")]
    struct PlanCli {
        #[command(flatten)]
        args: plan::PlanArgs,
    }
    let cli = PlanCli::try_parse_from(
        std::iter::once(OsString::from("plan")).chain(args.into_iter().map(Into::into)),
    )
    .map_err(|e| stoker::Error::usage(e.render().to_string().trim_end().to_string()))?;
    plan::json_report(&cli.args)
}
