//! `--shard i/n | auto | auto/N` of `stoker resize` and `stoker convert`: which part of a job
//! that writes one data set in parallel this run is, and the names and indexes its part writes.
//!
//! - `i/n`: part `i` (0-based) of `n`.
//! - `auto`: a task of a Slurm job array (`sbatch --array=0-7`): part `SLURM_ARRAY_TASK_ID -
//!   SLURM_ARRAY_TASK_MIN` of `SLURM_ARRAY_TASK_COUNT`. A stepped or listed array
//!   (`--array=0-15:4`, `--array=1,5,9`) leaves gaps between the IDs and is an error.
//! - `auto/N`: a pod of a Kubernetes indexed Job of `N` completions: part
//!   `JOB_COMPLETION_INDEX` of `N` (the Job does not export its count).

use std::ffi::OsString;
use std::path::Path;

use stoker::source::{Index, Part};
use stoker::{Error, Result};

/// The value of `--shard`, before the environment is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardArg {
    /// `i/n`.
    Fixed(Part),
    /// `auto`: from a Slurm job array.
    Auto,
    /// `auto/N`: from a Kubernetes indexed Job of `N` completions.
    AutoOf(usize),
}

/// Parses `--shard` (clap's value parser: the message is what clap shows).
pub fn parse_shard(s: &str) -> std::result::Result<ShardArg, String> {
    let bad = || {
        format!(
            "shard {s:?} is not i/n (0 <= i < n), auto (a Slurm job array) or auto/N (a \
             Kubernetes indexed Job of N completions)"
        )
    };
    let number = |v: &str| v.trim().parse::<usize>().map_err(|_| bad());
    let s_trim = s.trim();
    if s_trim == "auto" {
        return Ok(ShardArg::Auto);
    }
    let (i, n) = s_trim.split_once('/').ok_or_else(bad)?;
    if i.trim() == "auto" {
        let n = number(n)?;
        return if n > 0 {
            Ok(ShardArg::AutoOf(n))
        } else {
            Err(bad())
        };
    }
    Part::new(number(i)?, number(n)?)
        .map(ShardArg::Fixed)
        .map_err(|_| bad())
}

impl ShardArg {
    /// The part, reading the real environment for `auto` and `auto/N`.
    pub fn part(self) -> Result<Part> {
        self.resolve(|name| std::env::var_os(name))
    }

    /// The part, reading `auto` and `auto/N` from the variables `var(name)` gives: usage
    /// errors that name the variables (unset, not a number, an index outside the count, a
    /// stepped or listed array).
    pub fn resolve(self, var: impl Fn(&str) -> Option<OsString>) -> Result<Part> {
        let read = |name: &str| -> Result<Option<usize>> {
            let Some(v) = var(name) else {
                return Ok(None);
            };
            let text = v.to_string_lossy();
            text.trim().parse().map(Some).map_err(|_| {
                Error::usage(format!(
                    "invalid {name} {text:?}: expected a non-negative integer"
                ))
            })
        };
        match self {
            ShardArg::Fixed(p) => Ok(p),
            ShardArg::AutoOf(n) => {
                let i = read("JOB_COMPLETION_INDEX")?.ok_or_else(|| {
                    Error::usage(format!(
                        "--shard auto/{n}: JOB_COMPLETION_INDEX is not set (it is set in the \
                         pods of a Kubernetes Job with completionMode: Indexed); in a Slurm job \
                         array give --shard auto, elsewhere --shard i/{n}"
                    ))
                })?;
                if i >= n {
                    return Err(Error::usage(format!(
                        "JOB_COMPLETION_INDEX {i} must be < {n} (--shard auto/{n}): give the \
                         Job's completions as N"
                    )));
                }
                Part::new(i, n)
            }
            ShardArg::Auto => {
                let id = read("SLURM_ARRAY_TASK_ID")?.ok_or_else(|| {
                    Error::usage(
                        "--shard auto: SLURM_ARRAY_TASK_ID is not set (not a task of a Slurm \
                         job array, sbatch --array=0-N); in a Kubernetes indexed Job give \
                         --shard auto/N, elsewhere --shard i/n",
                    )
                })?;
                let count = read("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                    Error::usage("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")
                })?;
                let min = read("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
                let gaps = |why: String| {
                    Error::usage(format!(
                        "--shard auto: {why}: a stepped or listed array (--array=0-15:4, \
                         --array=1,5,9) leaves parts without a task; submit a range without \
                         gaps (--array=0-{}) or give --shard i/n",
                        count.max(1) - 1
                    ))
                };
                if let Some(step) = read("SLURM_ARRAY_TASK_STEP")?
                    && step != 1
                {
                    return Err(gaps(format!("SLURM_ARRAY_TASK_STEP is {step}")));
                }
                if let Some(max) = read("SLURM_ARRAY_TASK_MAX")?
                    && max.checked_sub(min).map(|d| d + 1) != Some(count)
                {
                    return Err(gaps(format!(
                        "SLURM_ARRAY_TASK_MIN {min} to SLURM_ARRAY_TASK_MAX {max} is not \
                         SLURM_ARRAY_TASK_COUNT {count} tasks"
                    )));
                }
                match id.checked_sub(min) {
                    Some(i) if i < count => Part::new(i, count),
                    _ => Err(gaps(format!(
                        "SLURM_ARRAY_TASK_ID {id} - SLURM_ARRAY_TASK_MIN {min} is outside \
                         0..{count} (SLURM_ARRAY_TASK_COUNT)"
                    ))),
                }
            }
        }
    }
}

/// The file name of shard `k` of `part` (or of a whole run): `STEM-IIII-of-NNNN-KKKKKK.EXT`
/// (`STEM-KKKKKK.EXT`), so that parts never write the same file.
pub fn shard_name(stem: &str, part: Option<Part>, k: usize, ext: &str) -> String {
    match part {
        Some(p) => format!("{stem}-{}-{k:06}.{ext}", p.tag()),
        None => format!("{stem}-{k:06}.{ext}"),
    }
}

/// Before a run of `part` (or a whole run) writes `dst`'s index, removes the index files that
/// it replaces, so that an index never names the shards of an earlier run while this one
/// writes (the index is written last): `stoker.json` always; for a whole run every part's
/// index; for a part its own index and those of parts of another count (an earlier run's).
/// The indexes of this run's other parts, which may be running, are kept.
pub fn clear_indexes(dst: &Path, part: Option<Part>) -> Result<()> {
    let remove = |path: &Path| match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    };
    remove(&dst.join(Index::FILE))?;
    for (p, path) in Part::files_in(dst)? {
        if part.is_none_or(|mine| p == mine || p.count != mine.count) {
            remove(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let owned: Vec<(String, OsString)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| {
            owned
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn part(i: usize, n: usize) -> Part {
        Part::new(i, n).unwrap()
    }

    fn usage(arg: ShardArg, vars: &[(&str, &str)]) -> String {
        let e = arg.resolve(env(vars)).unwrap_err();
        assert_eq!(e.kind(), stoker::ErrorKind::Usage, "{e}");
        e.message().to_string()
    }

    /// The variables of a task of `sbatch --array=MIN-MAX:STEP` (COUNT tasks).
    fn array(
        id: usize,
        min: usize,
        max: usize,
        step: usize,
        count: usize,
    ) -> Vec<(String, String)> {
        [
            ("SLURM_ARRAY_TASK_ID", id),
            ("SLURM_ARRAY_TASK_MIN", min),
            ("SLURM_ARRAY_TASK_MAX", max),
            ("SLURM_ARRAY_TASK_STEP", step),
            ("SLURM_ARRAY_TASK_COUNT", count),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
        v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn parses_every_spelling() {
        assert_eq!(parse_shard("3/8"), Ok(ShardArg::Fixed(part(3, 8))));
        assert_eq!(parse_shard(" 0 / 1 "), Ok(ShardArg::Fixed(part(0, 1))));
        assert_eq!(parse_shard("auto"), Ok(ShardArg::Auto));
        assert_eq!(parse_shard("auto/16"), Ok(ShardArg::AutoOf(16)));
        for bad in [
            "8/8",
            "x",
            "1/0",
            "-1/4",
            "auto/0",
            "auto/x",
            "automatic",
            "3/8/2",
            "",
        ] {
            let e = parse_shard(bad).unwrap_err();
            assert!(e.contains("auto/N"), "{bad}: {e}");
        }
    }

    #[test]
    fn fixed_parts_read_nothing() {
        let p = ShardArg::Fixed(part(1, 3))
            .resolve(|_| panic!("no variable is read for i/n"))
            .unwrap();
        assert_eq!(p, part(1, 3));
    }

    #[test]
    fn auto_from_a_slurm_array_with_and_without_min() {
        // sbatch --array=0-3 (Slurm sets MIN, MAX and STEP too).
        for id in 0..4 {
            let p = ShardArg::Auto.resolve(env(&pairs(&array(id, 0, 3, 1, 4))));
            assert_eq!(p.unwrap(), part(id, 4));
        }
        // sbatch --array=1-8: ID 1 is part 0, ID 8 part 7.
        for id in 1..=8 {
            let p = ShardArg::Auto.resolve(env(&pairs(&array(id, 1, 8, 1, 8))));
            assert_eq!(p.unwrap(), part(id - 1, 8));
        }
        // Without MIN, MAX and STEP: the IDs start at 0.
        let p = ShardArg::Auto
            .resolve(env(&[
                ("SLURM_ARRAY_TASK_ID", "3"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ]))
            .unwrap();
        assert_eq!(p, part(3, 4));
    }

    #[test]
    fn a_stepped_or_listed_array_is_an_error() {
        // sbatch --array=0-15:4: IDs 0, 4, 8, 12 and COUNT 4. Every task fails, even ID 0,
        // whose part alone would be in range: the others would leave parts 1 to 3 undone.
        for id in [0, 4, 8, 12] {
            let m = usage(ShardArg::Auto, &pairs(&array(id, 0, 12, 4, 4)));
            assert!(m.contains("SLURM_ARRAY_TASK_STEP is 4"), "{id}: {m}");
            assert!(m.contains("stepped or listed"), "{id}: {m}");
        }
        // Without STEP and MAX, ID - MIN outside 0..COUNT still tells.
        let m = usage(
            ShardArg::Auto,
            &[
                ("SLURM_ARRAY_TASK_ID", "12"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
                ("SLURM_ARRAY_TASK_MIN", "0"),
            ],
        );
        assert!(
            m.contains("SLURM_ARRAY_TASK_ID 12 - SLURM_ARRAY_TASK_MIN 0 is outside 0..4"),
            "{m}"
        );
        // sbatch --array=1,5,9: MIN 1, MAX 9, COUNT 3.
        let m = usage(ShardArg::Auto, &pairs(&array(5, 1, 9, 1, 3)));
        assert!(m.contains("SLURM_ARRAY_TASK_MAX 9"), "{m}");
        assert!(m.contains("stepped or listed"), "{m}");
        // An ID below MIN.
        let m = usage(
            ShardArg::Auto,
            &[
                ("SLURM_ARRAY_TASK_ID", "0"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
            ],
        );
        assert!(m.contains("outside 0..3"), "{m}");
    }

    #[test]
    fn auto_errors_name_the_variables() {
        let m = usage(ShardArg::Auto, &[]);
        assert!(m.contains("SLURM_ARRAY_TASK_ID is not set"), "{m}");
        assert!(m.contains("auto/N"), "{m}");
        let m = usage(ShardArg::Auto, &[("SLURM_ARRAY_TASK_ID", "1")]);
        assert_eq!(
            m,
            "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not"
        );
        let m = usage(
            ShardArg::Auto,
            &[
                ("SLURM_ARRAY_TASK_ID", "one"),
                ("SLURM_ARRAY_TASK_COUNT", "2"),
            ],
        );
        assert_eq!(
            m,
            "invalid SLURM_ARRAY_TASK_ID \"one\": expected a non-negative integer"
        );
    }

    #[test]
    fn auto_of_n_from_an_indexed_job() {
        let p = ShardArg::AutoOf(4)
            .resolve(env(&[("JOB_COMPLETION_INDEX", "3")]))
            .unwrap();
        assert_eq!(p, part(3, 4));
        // The Slurm variables do not count for auto/N.
        let m = usage(
            ShardArg::AutoOf(4),
            &[
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ],
        );
        assert!(m.contains("JOB_COMPLETION_INDEX is not set"), "{m}");
        let m = usage(ShardArg::AutoOf(4), &[("JOB_COMPLETION_INDEX", "4")]);
        assert!(m.contains("JOB_COMPLETION_INDEX 4 must be < 4"), "{m}");
    }

    #[test]
    fn names_of_parts_never_collide() {
        assert_eq!(shard_name("shard", None, 3, "tar"), "shard-000003.tar");
        let a = shard_name("shard", Some(part(0, 2)), 0, "tar");
        let b = shard_name("shard", Some(part(1, 2)), 0, "tar");
        assert_eq!(a, "shard-0000-of-0002-000000.tar");
        assert_ne!(a, b);
    }

    #[test]
    fn clearing_keeps_the_other_parts_of_this_run() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let write = |p: Option<Part>| {
            let mut index = Index::new("tar", 0);
            index.part = p;
            index.write(d).unwrap();
        };
        let names = || {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        write(None);
        write(Some(part(0, 2)));
        write(Some(part(1, 2)));
        write(Some(part(0, 3)));
        clear_indexes(d, Some(part(1, 2))).unwrap();
        assert_eq!(names(), ["stoker.part-0000-of-0002.json"]);
        write(Some(part(1, 2)));
        clear_indexes(d, None).unwrap();
        assert!(names().is_empty(), "{:?}", names());
        // A directory that does not exist yet has nothing to clear.
        clear_indexes(&d.join("new"), None).unwrap();
    }
}
