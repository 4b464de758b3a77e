//! Rank and world size from the launcher that started the process: torchrun (and accelerate,
//! Ray Train), MPICH or Intel MPI (PMI), Open MPI, or a Slurm `srun` step.
//!
//! [`Placement::from_vars`] reads them from any set of variables (a pure function, so that
//! tests need not touch the process environment); [`Placement::from_env`] is the one reader of
//! the real environment. The families are tried in a fixed order, and the first one present
//! decides:
//!
//! | # | family ([`RankSource`]) | rank, size | local rank, local size (optional) |
//! |---|---|---|---|
//! | 1 | torchrun / accelerate / Ray Train (`torchrun`) | `RANK`, `WORLD_SIZE` | `LOCAL_RANK`, `LOCAL_WORLD_SIZE` |
//! | 2 | MPICH / Intel MPI, PMI (`pmi`) | `PMI_RANK`, `PMI_SIZE` | `MPI_LOCALRANKID`, `MPI_LOCALNRANKS` |
//! | 3 | Open MPI (`openmpi`) | `OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_SIZE` | `OMPI_COMM_WORLD_LOCAL_RANK`, `OMPI_COMM_WORLD_LOCAL_SIZE` |
//! | 4 | Slurm, inside an `srun` step only (`slurm`) | `SLURM_PROCID`, `SLURM_NTASKS` | `SLURM_LOCALID`, — |
//!
//! - A family is present when its rank or its size variable is set; the local variables alone
//!   do not make it present.
//! - The first present family must have both, each a non-negative integer, with rank < size;
//!   otherwise it is a usage error that names the variables.
//! - Slurm comes last: torchrun or mpirun started inside a Slurm allocation leaves
//!   `SLURM_PROCID` set, true of the launcher's process and not of the rank.
//! - Slurm's variables count only inside a step started by `srun`, told apart by
//!   `SLURM_STEP_ID` (see [`slurm_step`]); in a batch script they are ignored, and a warning
//!   says so when `SLURM_NTASKS` asks for more than one task.
//!
//! ```
//! use stoker::launch::{Placement, RankSource};
//! let vars = [("SLURM_PROCID", "3"), ("SLURM_NTASKS", "8"), ("SLURM_LOCALID", "1"), ("SLURM_STEP_ID", "0")];
//! let p = Placement::from_vars(|name| {
//!     vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).into())
//! })?;
//! assert_eq!((p.rank, p.world_size, p.local_rank, p.source), (3, 8, Some(1), RankSource::Slurm));
//! # Ok::<(), stoker::Error>(())
//! ```

use std::ffi::OsString;

use serde::Serialize;

use crate::{Error, Result};

/// Which launcher's variables gave a process its rank and world size.
///
/// ```
/// use stoker::launch::RankSource;
/// assert_eq!(RankSource::OpenMpi.as_str(), "openmpi");
/// assert_eq!(serde_json::to_string(&RankSource::Args).unwrap(), "\"args\"");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RankSource {
    /// `RANK` and `WORLD_SIZE`: torchrun, accelerate, Ray Train.
    Torchrun,
    /// `PMI_RANK` and `PMI_SIZE`: MPICH's and Intel MPI's Hydra, `srun --mpi=pmi2`.
    Pmi,
    /// `OMPI_COMM_WORLD_RANK` and `OMPI_COMM_WORLD_SIZE`: Open MPI's `mpirun`.
    #[serde(rename = "openmpi")]
    OpenMpi,
    /// `SLURM_PROCID` and `SLURM_NTASKS` inside an `srun` step.
    Slurm,
    /// Given by the program (`Sampler::distributed`, `LoaderBuilder::distributed`, Python's
    /// `rank=`, `torch.distributed`).
    Args,
    /// None of the above: rank 0 of 1.
    None,
}

impl RankSource {
    /// The lowercase name, as reports spell it (`"torchrun"`, `"pmi"`, `"openmpi"`, `"slurm"`,
    /// `"args"`, `"none"`).
    pub fn as_str(self) -> &'static str {
        match self {
            RankSource::Torchrun => "torchrun",
            RankSource::Pmi => "pmi",
            RankSource::OpenMpi => "openmpi",
            RankSource::Slurm => "slurm",
            RankSource::Args => "args",
            RankSource::None => "none",
        }
    }
}

impl std::fmt::Display for RankSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A process's place in a data-parallel job: its rank of `world_size`, its local rank and the
/// number of ranks on its node where the launcher says, and where they came from.
///
/// ```
/// let p = stoker::launch::Placement::single();
/// assert_eq!((p.rank, p.world_size, p.source.as_str()), (0, 1, "none"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// This process's rank, `< world_size`.
    pub rank: usize,
    /// Number of data-parallel processes.
    pub world_size: usize,
    /// Rank on this node, when the launcher gives it.
    pub local_rank: Option<usize>,
    /// Ranks on this node, when the launcher gives it.
    pub local_world_size: Option<usize>,
    /// The family of variables it was read from.
    pub source: RankSource,
}

/// One launcher's variables.
struct Family {
    source: RankSource,
    rank: &'static str,
    size: &'static str,
    local_rank: &'static str,
    local_size: Option<&'static str>,
}

/// The launchers, in the order they are tried.
const FAMILIES: [Family; 4] = [
    Family {
        source: RankSource::Torchrun,
        rank: "RANK",
        size: "WORLD_SIZE",
        local_rank: "LOCAL_RANK",
        local_size: Some("LOCAL_WORLD_SIZE"),
    },
    Family {
        source: RankSource::Pmi,
        rank: "PMI_RANK",
        size: "PMI_SIZE",
        local_rank: "MPI_LOCALRANKID",
        local_size: Some("MPI_LOCALNRANKS"),
    },
    Family {
        source: RankSource::OpenMpi,
        rank: "OMPI_COMM_WORLD_RANK",
        size: "OMPI_COMM_WORLD_SIZE",
        local_rank: "OMPI_COMM_WORLD_LOCAL_RANK",
        local_size: Some("OMPI_COMM_WORLD_LOCAL_SIZE"),
    },
    Family {
        source: RankSource::Slurm,
        rank: "SLURM_PROCID",
        size: "SLURM_NTASKS",
        local_rank: "SLURM_LOCALID",
        local_size: None,
    },
];

/// The largest step ID of a step that `srun` starts (Slurm's `SLURM_MAX_NORMAL_STEP_ID`,
/// slurm/slurm.h); the IDs above it name the batch script, the interactive step of `salloc`
/// and the external step.
const SLURM_MAX_NORMAL_STEP_ID: u64 = 0xffff_fff0;

/// What [`detect`] found: the placement, and for a Slurm batch script that asked for more
/// than one task but was not started by `srun`, that task count (worth a warning).
#[derive(Debug, PartialEq, Eq)]
struct Detected {
    placement: Placement,
    outside_step: Option<usize>,
}

impl Placement {
    /// Rank 0 of 1, from no launcher ([`RankSource::None`]).
    pub fn single() -> Placement {
        Placement {
            rank: 0,
            world_size: 1,
            local_rank: None,
            local_world_size: None,
            source: RankSource::None,
        }
    }

    /// The placement the real environment gives (see [`from_vars`](Self::from_vars)).
    ///
    /// ```
    /// // Outside any launcher none of the variables is set.
    /// let launched = ["RANK", "WORLD_SIZE", "PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK",
    ///     "OMPI_COMM_WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"];
    /// if launched.iter().all(|v| std::env::var_os(v).is_none()) {
    ///     assert_eq!(stoker::launch::Placement::from_env()?, stoker::launch::Placement::single());
    /// }
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn from_env() -> Result<Placement> {
        Placement::from_vars(|name| std::env::var_os(name))
    }

    /// The placement that the variables `var(name)` give, trying the launchers in the order
    /// of the [module documentation](self); [`single`](Self::single) when none is present.
    /// A Slurm batch script (no `srun` step) with `SLURM_NTASKS` > 1 logs a warning: only one
    /// process runs, and it reads the whole data set.
    ///
    /// Errors (usage errors naming the variables): the first present family lacks its rank or
    /// its size; a value is not a non-negative integer (or not unicode); the size is 0; the
    /// rank is not below the size; the local rank is not below the local size.
    ///
    /// ```
    /// use stoker::launch::{Placement, RankSource};
    /// let get = |vars: &'static [(&'static str, &'static str)]| {
    ///     move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).into())
    /// };
    /// let p = Placement::from_vars(get(&[("PMI_RANK", "2"), ("PMI_SIZE", "4")]))?;
    /// assert_eq!((p.rank, p.world_size, p.source), (2, 4, RankSource::Pmi));
    /// let e = Placement::from_vars(get(&[("OMPI_COMM_WORLD_RANK", "1")])).unwrap_err();
    /// assert_eq!(e.message(), "OMPI_COMM_WORLD_RANK is set but OMPI_COMM_WORLD_SIZE is not");
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<Placement> {
        let found = detect(&var)?;
        if let Some(tasks) = found.outside_step {
            tracing::warn!(
                "SLURM_NTASKS={tasks} but this process was not started by srun (no \
                 SLURM_STEP_ID): only this one process runs, as rank 0 of 1, and it reads the \
                 whole data set; start the program with srun to run {tasks} ranks"
            );
        }
        Ok(found.placement)
    }
}

/// [`Placement::from_vars`] without the warning: what it logs is returned.
fn detect(var: &impl Fn(&str) -> Option<OsString>) -> Result<Detected> {
    let read = |name: &str| -> Result<Option<String>> {
        match var(name) {
            None => Ok(None),
            Some(v) => v.into_string().map(Some).map_err(|v| {
                Error::usage(format!(
                    "invalid {name} {:?}: not unicode",
                    v.to_string_lossy()
                ))
            }),
        }
    };
    for f in &FAMILIES {
        let (rank, size) = (read(f.rank)?, read(f.size)?);
        if rank.is_none() && size.is_none() {
            continue;
        }
        if f.source == RankSource::Slurm && !slurm_step(read("SLURM_STEP_ID")?.as_deref())? {
            // The batch script (or an salloc shell): one process, whatever SLURM_NTASKS says.
            let tasks = size.and_then(|s| s.trim().parse::<usize>().ok());
            return Ok(Detected {
                placement: Placement::single(),
                outside_step: tasks.filter(|&n| n > 1),
            });
        }
        let missing =
            |set: &str, unset: &str| Error::usage(format!("{set} is set but {unset} is not"));
        let rank = rank.ok_or_else(|| missing(f.size, f.rank))?;
        let size = size.ok_or_else(|| missing(f.rank, f.size))?;
        let rank = parse(f.rank, &rank)?;
        let world_size = parse(f.size, &size)?;
        check(f.rank, rank, f.size, world_size)?;
        let local_rank = read(f.local_rank)?
            .map(|v| parse(f.local_rank, &v))
            .transpose()?;
        let local_world_size = match f.local_size {
            Some(name) => read(name)?.map(|v| parse(name, &v)).transpose()?,
            None => None,
        };
        if let (Some(lr), Some(ls), Some(ls_name)) = (local_rank, local_world_size, f.local_size) {
            check(f.local_rank, lr, ls_name, ls)?;
        }
        return Ok(Detected {
            placement: Placement {
                rank,
                world_size,
                local_rank,
                local_world_size,
                source: f.source,
            },
            outside_step: None,
        });
    }
    Ok(Detected {
        placement: Placement::single(),
        outside_step: None,
    })
}

/// A non-negative integer, or a usage error naming the variable.
fn parse(name: &str, value: &str) -> Result<usize> {
    value.trim().parse().map_err(|e| {
        Error::usage(format!(
            "invalid {name} {value:?}: expected a non-negative integer"
        ))
        .with_source(e)
    })
}

/// `rank < size` (and `size > 0`), or a usage error naming both variables.
fn check(rank_name: &str, rank: usize, size_name: &str, size: usize) -> Result<()> {
    if size == 0 {
        return Err(Error::usage(format!("{size_name} is 0: it must be > 0")));
    }
    if rank >= size {
        return Err(Error::usage(format!(
            "{rank_name} {rank} must be < {size_name} {size}"
        )));
    }
    Ok(())
}

/// Whether `SLURM_STEP_ID` (its value, `None` when unset) says that this process is a task of
/// a step started by `srun`.
///
/// srun(1), OUTPUT ENVIRONMENT VARIABLES, lists `SLURM_STEP_ID` ("The step ID of the current
/// job") among the variables srun sets for the tasks it starts; sbatch(1)'s list of the
/// variables of the batch script does not have it. In Slurm's source (`setup_env`,
/// src/common/env.c) the batch script of released versions gets no `SLURM_STEP_ID`; the
/// development branch (commit 87077e7c7d, May 2026) gives it the batch step's reserved ID,
/// printed signed (`-5`; `-6` for salloc's interactive step). Those reserved IDs lie above
/// `SLURM_MAX_NORMAL_STEP_ID` (slurm/slurm.h) and are refused in their unsigned spelling too.
/// So a step number in `0..=0xfffffff0` means srun; unset or anything else, the batch script.
/// A value that is not a number at all is a usage error.
///
/// ```
/// use stoker::launch::slurm_step;
/// assert!(slurm_step(Some("0"))?);
/// assert!(!slurm_step(None)?);                  // the batch script
/// assert!(!slurm_step(Some("-5"))?);            // the batch step, newer Slurm
/// assert!(!slurm_step(Some("4294967291"))?);    // the same, printed unsigned
/// assert!(slurm_step(Some("batch")).is_err());
/// # Ok::<(), stoker::Error>(())
/// ```
pub fn slurm_step(step_id: Option<&str>) -> Result<bool> {
    let Some(v) = step_id else {
        return Ok(false);
    };
    let id: i64 = v.trim().parse().map_err(|e| {
        Error::usage(format!(
            "invalid SLURM_STEP_ID {v:?}: expected a step number"
        ))
        .with_source(e)
    })?;
    Ok((0..=SLURM_MAX_NORMAL_STEP_ID as i64).contains(&id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn place(pairs: &[(&str, &str)]) -> Result<Placement> {
        Placement::from_vars(vars(pairs))
    }

    fn detected(pairs: &[(&str, &str)]) -> Detected {
        detect(&vars(pairs)).unwrap()
    }

    fn usage(pairs: &[(&str, &str)]) -> String {
        let e = place(pairs).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage, "{pairs:?}: {e}");
        e.message().to_string()
    }

    #[test]
    fn nothing_set_is_rank_0_of_1() {
        assert_eq!(place(&[]).unwrap(), Placement::single());
        // Local variables alone do not make a family present.
        assert_eq!(
            place(&[("LOCAL_RANK", "3"), ("SLURM_LOCALID", "1")]).unwrap(),
            Placement::single()
        );
    }

    #[test]
    fn each_family_alone() {
        let p = place(&[
            ("RANK", "5"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "4"),
        ])
        .unwrap();
        assert_eq!(
            p,
            Placement {
                rank: 5,
                world_size: 8,
                local_rank: Some(1),
                local_world_size: Some(4),
                source: RankSource::Torchrun
            }
        );
        // Plain RANK + WORLD_SIZE, as before: no local values.
        let p = place(&[("RANK", "1"), ("WORLD_SIZE", "2")]).unwrap();
        assert_eq!((p.local_rank, p.local_world_size), (None, None));
        let p = place(&[
            ("PMI_RANK", "2"),
            ("PMI_SIZE", "3"),
            ("MPI_LOCALRANKID", "0"),
            ("MPI_LOCALNRANKS", "1"),
        ])
        .unwrap();
        assert_eq!(
            (
                p.rank,
                p.world_size,
                p.local_rank,
                p.local_world_size,
                p.source
            ),
            (2, 3, Some(0), Some(1), RankSource::Pmi)
        );
        let p = place(&[
            ("OMPI_COMM_WORLD_RANK", "6"),
            ("OMPI_COMM_WORLD_SIZE", "7"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "2"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "3"),
        ])
        .unwrap();
        assert_eq!(
            (
                p.rank,
                p.world_size,
                p.local_rank,
                p.local_world_size,
                p.source
            ),
            (6, 7, Some(2), Some(3), RankSource::OpenMpi)
        );
        let p = place(&[
            ("SLURM_PROCID", "9"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_STEP_ID", "0"),
        ])
        .unwrap();
        assert_eq!(
            (
                p.rank,
                p.world_size,
                p.local_rank,
                p.local_world_size,
                p.source
            ),
            (9, 16, Some(1), None, RankSource::Slurm)
        );
    }

    #[test]
    fn the_first_present_family_wins() {
        // torchrun inside an srun step of one task per node: RANK, not SLURM_PROCID.
        let slurm = [
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_STEP_ID", "0"),
        ];
        let ompi = [("OMPI_COMM_WORLD_RANK", "3"), ("OMPI_COMM_WORLD_SIZE", "4")];
        let pmi = [("PMI_RANK", "1"), ("PMI_SIZE", "4")];
        let torch = [("RANK", "5"), ("WORLD_SIZE", "8")];
        let all: Vec<_> = [&torch[..], &pmi, &ompi, &slurm].concat();
        let p = place(&all).unwrap();
        assert_eq!(
            (p.rank, p.world_size, p.source),
            (5, 8, RankSource::Torchrun)
        );
        let p = place(&[&pmi[..], &ompi, &slurm].concat()).unwrap();
        assert_eq!((p.rank, p.source), (1, RankSource::Pmi));
        let p = place(&[&ompi[..], &slurm].concat()).unwrap();
        assert_eq!((p.rank, p.source), (3, RankSource::OpenMpi));
        // The first present family decides even when it is broken: no fallback to a later one.
        let e = usage(&[&[("RANK", "1")][..], &slurm].concat());
        assert_eq!(e, "RANK is set but WORLD_SIZE is not");
    }

    #[test]
    fn a_missing_half_names_the_missing_variable() {
        for (set, unset) in [
            ("RANK", "WORLD_SIZE"),
            ("WORLD_SIZE", "RANK"),
            ("PMI_RANK", "PMI_SIZE"),
            ("PMI_SIZE", "PMI_RANK"),
            ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
            ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
        ] {
            assert_eq!(
                usage(&[(set, "1")]),
                format!("{set} is set but {unset} is not")
            );
        }
        let step = ("SLURM_STEP_ID", "3");
        assert_eq!(
            usage(&[("SLURM_PROCID", "1"), step]),
            "SLURM_PROCID is set but SLURM_NTASKS is not"
        );
        assert_eq!(
            usage(&[("SLURM_NTASKS", "4"), step]),
            "SLURM_NTASKS is set but SLURM_PROCID is not"
        );
    }

    #[test]
    fn bad_values_name_the_variables() {
        assert_eq!(
            usage(&[("RANK", "4"), ("WORLD_SIZE", "4")]),
            "RANK 4 must be < WORLD_SIZE 4"
        );
        assert_eq!(
            usage(&[("PMI_RANK", "7"), ("PMI_SIZE", "2")]),
            "PMI_RANK 7 must be < PMI_SIZE 2"
        );
        assert_eq!(
            usage(&[
                ("SLURM_PROCID", "4"),
                ("SLURM_NTASKS", "4"),
                ("SLURM_STEP_ID", "0")
            ]),
            "SLURM_PROCID 4 must be < SLURM_NTASKS 4"
        );
        assert_eq!(
            usage(&[("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "0")]),
            "OMPI_COMM_WORLD_SIZE is 0: it must be > 0"
        );
        assert_eq!(
            usage(&[("RANK", "x"), ("WORLD_SIZE", "4")]),
            "invalid RANK \"x\": expected a non-negative integer"
        );
        assert_eq!(
            usage(&[("RANK", "0"), ("WORLD_SIZE", "-2")]),
            "invalid WORLD_SIZE \"-2\": expected a non-negative integer"
        );
        assert_eq!(
            usage(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "one")]),
            "invalid LOCAL_RANK \"one\": expected a non-negative integer"
        );
        assert_eq!(
            usage(&[
                ("RANK", "0"),
                ("WORLD_SIZE", "2"),
                ("LOCAL_RANK", "2"),
                ("LOCAL_WORLD_SIZE", "2")
            ]),
            "LOCAL_RANK 2 must be < LOCAL_WORLD_SIZE 2"
        );
        // Whitespace around a number is accepted, as before.
        let p = place(&[("RANK", " 3"), ("WORLD_SIZE", "4\n")]).unwrap();
        assert_eq!((p.rank, p.world_size), (3, 4));
    }

    #[cfg(unix)]
    #[test]
    fn a_value_that_is_not_unicode_is_named() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'1', 0xff]);
        let e = Placement::from_vars(|n| match n {
            "PMI_RANK" => Some(bad.clone()),
            "PMI_SIZE" => Some("2".into()),
            _ => None,
        })
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.message().starts_with("invalid PMI_RANK"), "{e}");
        assert!(e.message().ends_with("not unicode"), "{e}");
    }

    #[test]
    fn slurm_counts_only_inside_an_srun_step() {
        let batch = [
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_JOB_ID", "1234"),
        ];
        // The batch script of `sbatch --ntasks=4` without srun: one process, and a warning.
        assert_eq!(
            detected(&batch),
            Detected {
                placement: Placement::single(),
                outside_step: Some(4)
            }
        );
        // Newer Slurm sets the batch step's reserved ID there: still not a step.
        for id in ["-5", "-6", "4294967291", "4294967290"] {
            let d = detected(&[&batch[..], &[("SLURM_STEP_ID", id)]].concat());
            assert_eq!(d.placement, Placement::single(), "SLURM_STEP_ID={id}");
            assert_eq!(d.outside_step, Some(4), "SLURM_STEP_ID={id}");
        }
        // One task asked for: nothing to warn about.
        let one = [("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")];
        assert_eq!(detected(&one).outside_step, None);
        // The same variables in the tasks of `srun` (step 0): rank 0 of 4.
        let step = [&batch[..], &[("SLURM_STEP_ID", "0")]].concat();
        let d = detected(&step);
        assert_eq!(d.outside_step, None);
        assert_eq!(
            (d.placement.rank, d.placement.world_size, d.placement.source),
            (0, 4, RankSource::Slurm)
        );
        // A later step of the same job.
        let p = place(&[
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_STEP_ID", "12"),
        ])
        .unwrap();
        assert_eq!((p.rank, p.source), (3, RankSource::Slurm));
        assert_eq!(
            usage(&[&batch[..], &[("SLURM_STEP_ID", "x")]].concat()),
            "invalid SLURM_STEP_ID \"x\": expected a step number"
        );
    }

    #[test]
    fn names_are_stable() {
        let all = [
            RankSource::Torchrun,
            RankSource::Pmi,
            RankSource::OpenMpi,
            RankSource::Slurm,
            RankSource::Args,
            RankSource::None,
        ];
        let names: Vec<String> = all
            .iter()
            .map(|s| {
                serde_json::to_value(s)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            ["torchrun", "pmi", "openmpi", "slurm", "args", "none"]
        );
        for s in all {
            assert_eq!(s.as_str(), serde_json::to_value(s).unwrap());
            assert_eq!(s.to_string(), s.as_str());
        }
    }
}
