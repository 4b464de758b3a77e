//! The command line (clap derive).

use std::path::PathBuf;

use clap::Parser;

/// Trains a small MLP on an ImageFolder from stoker's batches: on the GPU (cuda feature), or on
/// the host with `--cpu`.
#[derive(Clone, Debug, PartialEq, Parser)]
#[command(name = "train_gpu", args_override_self = true)]
pub struct Args {
    /// ImageFolder to train on (one sub-folder per class).
    #[arg(value_name = "PATH", default_value = "fixtures/photos-256x144")]
    pub path: PathBuf,
    /// Passes over the data.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = at_least_one)]
    pub epochs: usize,
    /// Images per batch.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = at_least_one)]
    pub batch_size: usize,
    /// Batches whose gradients are summed into one SGD step.
    #[arg(long, value_name = "A", default_value_t = 1, value_parser = at_least_one)]
    pub accumulate: usize,
    /// Learning rate (finite, > 0).
    #[arg(
        long,
        value_name = "LR",
        default_value_t = 0.05,
        value_parser = learning_rate,
        allow_negative_numbers = true
    )]
    pub lr: f32,
    /// Decoding threads of the loader.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub workers: usize,
    /// Seed of the shuffle and of the initial weights.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Pooled cells per side: 3·P·P features per image.
    #[arg(long, value_name = "P", default_value_t = 8, value_parser = at_least_one)]
    pub pool: usize,
    /// Hidden units.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = at_least_one)]
    pub hidden: usize,
    /// Train on the CPU: the same model and maths with plain loops (no GPU or cuda feature
    /// needed).
    #[arg(long)]
    pub cpu: bool,
}

impl Default for Args {
    /// The defaults of the command line (no arguments).
    fn default() -> Args {
        Args::try_parse_from(["train_gpu"]).expect("the defaults parse")
    }
}

/// A count of at least 1.
fn at_least_one(s: &str) -> Result<usize, String> {
    let v: usize = s
        .parse()
        .map_err(|_| format!("{s:?} is not a valid number"))?;
    if v == 0 {
        return Err("must be at least 1".into());
    }
    Ok(v)
}

/// A finite learning rate > 0.
fn learning_rate(s: &str) -> Result<f32, String> {
    let v: f32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a valid number"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("must be a finite number > 0 (got {v})"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::*;

    fn parse(s: &str) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("train_gpu").chain(s.split_whitespace()))
    }

    #[test]
    fn the_parser_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let d = parse("").unwrap();
        assert_eq!(d, Args::default());
        assert_eq!(
            (
                d.path.to_str(),
                d.epochs,
                d.batch_size,
                d.accumulate,
                d.lr,
                d.workers,
                d.seed,
                d.pool,
                d.hidden,
                d.cpu
            ),
            (
                Some("fixtures/photos-256x144"),
                10,
                8,
                1,
                0.05,
                2,
                0,
                8,
                64,
                false
            )
        );
    }

    #[test]
    fn arguments() {
        let a = parse("data --epochs 3 --batch-size=4 --accumulate 2 --lr 0.1 --cpu --hidden 16")
            .unwrap();
        assert_eq!(
            (
                a.path.to_str(),
                a.epochs,
                a.batch_size,
                a.accumulate,
                a.lr,
                a.cpu,
                a.hidden
            ),
            (Some("data"), 3, 4, 2, 0.1, true, 16)
        );
        let a = parse("--workers=0 --seed 7 --pool 4 data").unwrap();
        assert_eq!(
            (a.path.to_str(), a.workers, a.seed, a.pool),
            (Some("data"), 0, 7, 4)
        );
        // A flag given twice: the last one wins, as with the old parser.
        let a = parse("--epochs 3 --cpu --epochs=5 --cpu").unwrap();
        assert_eq!((a.epochs, a.cpu), (5, true));
        assert_eq!(parse("-").unwrap().path.to_str(), Some("-"));
    }

    #[test]
    fn help() {
        for flag in ["--help", "-h"] {
            assert_eq!(parse(flag).unwrap_err().kind(), ErrorKind::DisplayHelp);
        }
        let help = Args::command().render_help().to_string();
        for want in [
            "[PATH]",
            "--epochs <N>",
            "--batch-size <N>",
            "--accumulate <A>",
            "--lr <LR>",
            "--workers <N>",
            "--seed <N>",
            "--pool <P>",
            "--hidden <N>",
            "--cpu",
            "[default: fixtures/photos-256x144]",
            "[default: 0.05]",
        ] {
            assert!(help.contains(want), "no {want:?} in\n{help}");
        }
    }

    #[test]
    fn errors() {
        let err = |s: &str| parse(s).unwrap_err();
        let e = err("--bogus 1");
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
        assert!(e.to_string().contains("--bogus"), "{e}");
        let e = err("--epochs");
        assert_eq!(e.kind(), ErrorKind::InvalidValue);
        assert!(e.to_string().contains("--epochs"), "{e}");
        let e = err("--epochs x");
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        assert!(e.to_string().contains("not a valid number"), "{e}");
        let e = err("--seed -1");
        assert!(e.to_string().contains("-1"), "{e}");
        for zero in [
            "--epochs",
            "--batch-size",
            "--accumulate",
            "--pool",
            "--hidden",
        ] {
            let e = err(&format!("{zero} 0"));
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{zero}");
            assert!(e.to_string().contains("at least 1"), "{e}");
        }
        for lr in ["-1", "0", "inf", "NaN"] {
            let e = err(&format!("--lr {lr}"));
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "--lr {lr}");
            assert!(e.to_string().contains("> 0"), "{e}");
        }
        let e = err("a b");
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
        assert!(e.to_string().contains("'b'"), "{e}");
    }
}
