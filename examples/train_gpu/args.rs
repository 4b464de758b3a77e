//! The command line.

use std::path::PathBuf;

/// Usage line printed by `--help` and after a bad flag.
pub const USAGE: &str = "usage: train_gpu [PATH] [--epochs 10] [--batch-size 8] [--accumulate 1] \
                         [--lr 0.05] [--workers 2] [--seed 0] [--pool 8] [--hidden 64] [--cpu]";

/// Command-line settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Args {
    pub path: PathBuf,
    pub epochs: usize,
    pub batch_size: usize,
    pub accumulate: usize,
    pub lr: f32,
    pub workers: usize,
    pub seed: u64,
    pub pool: usize,
    pub hidden: usize,
    pub cpu: bool,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            path: PathBuf::from("fixtures/photos-256x144"),
            epochs: 10,
            batch_size: 8,
            accumulate: 1,
            lr: 0.05,
            workers: 2,
            seed: 0,
            pool: 8,
            hidden: 64,
            cpu: false,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Train(Args),
    Help,
}

fn parse_num<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: {value:?} is not a valid number"))
}

/// Parses the arguments after the program name (std only: `--flag value` or `--flag=value`).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut out = Args::default();
    let mut path = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        if arg == "--cpu" {
            out.cpu = true;
            continue;
        }
        if !arg.starts_with('-') || arg == "-" {
            if path.is_some() {
                return Err(format!("unexpected argument {arg:?} (one PATH at most)"));
            }
            path = Some(PathBuf::from(arg));
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let known = [
            "--epochs",
            "--batch-size",
            "--accumulate",
            "--lr",
            "--workers",
            "--seed",
            "--pool",
            "--hidden",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown flag {flag:?}"));
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("{flag} needs a value"))?,
        };
        match flag.as_str() {
            "--epochs" => out.epochs = parse_num(&flag, &value)?,
            "--batch-size" => out.batch_size = parse_num(&flag, &value)?,
            "--accumulate" => out.accumulate = parse_num(&flag, &value)?,
            "--lr" => out.lr = parse_num(&flag, &value)?,
            "--workers" => out.workers = parse_num(&flag, &value)?,
            "--seed" => out.seed = parse_num(&flag, &value)?,
            "--pool" => out.pool = parse_num(&flag, &value)?,
            "--hidden" => out.hidden = parse_num(&flag, &value)?,
            _ => unreachable!("checked against the known flags"),
        }
    }
    if let Some(p) = path {
        out.path = p;
    }
    for (name, v) in [
        ("--epochs", out.epochs),
        ("--batch-size", out.batch_size),
        ("--accumulate", out.accumulate),
        ("--pool", out.pool),
        ("--hidden", out.hidden),
    ] {
        if v == 0 {
            return Err(format!("{name} must be at least 1"));
        }
    }
    if !(out.lr.is_finite() && out.lr > 0.0) {
        return Err(format!("--lr must be a finite number > 0 (got {})", out.lr));
    }
    Ok(Command::Train(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let parse = |s: &str| parse_args(s.split_whitespace().map(String::from));
        assert_eq!(parse(""), Ok(Command::Train(Args::default())));
        let Ok(Command::Train(a)) =
            parse("data --epochs 3 --batch-size=4 --accumulate 2 --lr 0.1 --cpu --hidden 16")
        else {
            panic!("parse failed")
        };
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
        assert_eq!(parse("--help"), Ok(Command::Help));
        assert!(parse("--bogus 1").unwrap_err().contains("--bogus"));
        assert!(parse("--epochs").unwrap_err().contains("needs a value"));
        assert!(parse("--epochs x")
            .unwrap_err()
            .contains("not a valid number"));
        assert!(parse("--accumulate 0").is_err());
        assert!(parse("--lr -1").is_err());
        assert!(parse("a b").is_err());
    }
}
