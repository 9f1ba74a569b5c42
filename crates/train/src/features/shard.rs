//! Which part of the backbone pass a process does: shard `K` of `N` (`train features --shard
//! K/N`), given on the command line or read from the scheduler (`--shard auto`: a Slurm job
//! array's task, or a Kubernetes Indexed Job's completion index).
//!
//! The work is cut into chunks of consecutive images ([`chunk_ranges`](super::chunks)); shard
//! `K` takes the chunks whose middle image falls in the `K`-th of `N` equal parts of all the
//! chunks' images, in order (train, val, eval sets): every shard gets a contiguous run of
//! images, the same on every machine, and the shards' sizes differ by at most about a chunk.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// How many shards share the work.
    pub count: usize,
}

/// What is wrong with a shard given on the command line or by the scheduler.
#[derive(Debug, Error, PartialEq)]
pub enum ShardError {
    /// Not `K/N` or `auto`.
    #[error("--shard `{0}`: expected K/N (shard K of N, counting from 0, e.g. 0/4) or `auto`")]
    Syntax(String),
    /// `N` = 0.
    #[error("--shard {0}: the shard count must be at least 1")]
    NoShards(String),
    /// `K` ≥ `N`.
    #[error("--shard {index}/{count}: shards count from 0, so K must be below {count}")]
    OutOfRange {
        /// K.
        index: usize,
        /// N.
        count: usize,
    },
    /// `auto` with no scheduler's variables.
    #[error(
        "--shard auto: not inside a Slurm job array (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT) \
         or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX with JOB_COMPLETIONS); give --shard \
         K/N instead"
    )]
    NoScheduler,
    /// A scheduler's variable is missing or not a number.
    #[error("--shard auto: {name} {problem}")]
    BadVariable {
        /// The variable.
        name: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// `K/N` (checked) or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardArg {
    /// Given on the command line.
    Given(Shard),
    /// From the scheduler's environment ([`Shard::from_env`]).
    Auto,
}

impl FromStr for ShardArg {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Self, ShardError> {
        if text == "auto" {
            return Ok(ShardArg::Auto);
        }
        let syntax = || ShardError::Syntax(text.to_string());
        let (k, n) = text.split_once('/').ok_or_else(syntax)?;
        let index: usize = k.trim().parse().map_err(|_| syntax())?;
        let count: usize = n.trim().parse().map_err(|_| syntax())?;
        Shard::new(index, count).map(ShardArg::Given)
    }
}

impl ShardArg {
    /// The shard: as given, or read from the environment through `var`.
    pub fn resolve(self, var: impl Fn(&str) -> Option<String>) -> Result<Shard, ShardError> {
        match self {
            ShardArg::Given(shard) => Ok(shard),
            ShardArg::Auto => Shard::from_env(var),
        }
    }
}

impl Shard {
    /// Shard `index` of `count`, checked.
    pub fn new(index: usize, count: usize) -> Result<Self, ShardError> {
        if count == 0 {
            return Err(ShardError::NoShards(format!("{index}/{count}")));
        }
        if index >= count {
            return Err(ShardError::OutOfRange { index, count });
        }
        Ok(Self { index, count })
    }

    /// The shard of this task of a Slurm job array (`SLURM_ARRAY_TASK_ID` counted from
    /// `SLURM_ARRAY_TASK_MIN` in steps of `SLURM_ARRAY_TASK_STEP`, of `SLURM_ARRAY_TASK_COUNT`),
    /// or of this pod of a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX` of `JOB_COMPLETIONS`,
    /// which the Job's manifest sets, since Kubernetes does not). `var` reads a variable.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ShardError> {
        let number = |name: &'static str| -> Result<Option<usize>, ShardError> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| ShardError::BadVariable {
                            name,
                            problem: format!("is `{v}`, not a whole number"),
                        })
                })
                .transpose()
        };
        let required = |name: &'static str, context: &str| -> Result<usize, ShardError> {
            number(name)?.ok_or_else(|| ShardError::BadVariable {
                name,
                problem: format!("is not set (but {context} is)"),
            })
        };
        if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let count = required("SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_ID")?;
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            let offset = id.checked_sub(min).ok_or(ShardError::BadVariable {
                name: "SLURM_ARRAY_TASK_ID",
                problem: format!("{id} is below SLURM_ARRAY_TASK_MIN {min}"),
            })?;
            if offset % step != 0 {
                // --array=0,3,7 (a list, not a range with a step): no K of N to read off.
                return Err(ShardError::BadVariable {
                    name: "SLURM_ARRAY_TASK_ID",
                    problem: format!(
                        "{id} is not SLURM_ARRAY_TASK_MIN {min} plus a multiple of \
                         SLURM_ARRAY_TASK_STEP {step}: use --array=0-(N-1), or --shard K/N"
                    ),
                });
            }
            return Self::new(offset / step, count);
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = required("JOB_COMPLETIONS", "JOB_COMPLETION_INDEX")?;
            return Self::new(index, count);
        }
        Err(ShardError::NoScheduler)
    }

    /// Whether this shard does the work item that starts `start` images into the whole pass
    /// of `total` images and holds `len` (its middle image decides).
    pub fn owns(&self, start: usize, len: usize, total: usize) -> bool {
        let middle = (start + len / 2) as u128;
        (middle * self.count as u128 / total.max(1) as u128) as usize == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn given_shards_parse_and_bad_ones_say_why() {
        assert_eq!(
            "2/4".parse(),
            Ok(ShardArg::Given(Shard::new(2, 4).unwrap()))
        );
        assert_eq!("auto".parse(), Ok(ShardArg::Auto));
        assert_eq!(
            "4/4".parse::<ShardArg>(),
            Err(ShardError::OutOfRange { index: 4, count: 4 })
        );
        assert!(matches!(
            "0/0".parse::<ShardArg>(),
            Err(ShardError::NoShards(_))
        ));
        for bad in ["", "1", "a/4", "1/b", "-1/4", "1/4/2", "1.5/4"] {
            assert!(
                matches!(bad.parse::<ShardArg>(), Err(ShardError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(ShardError::OutOfRange { index: 4, count: 4 }
            .to_string()
            .contains("below 4"));
    }

    #[test]
    fn auto_reads_slurm_arrays_and_kubernetes_indexed_jobs() {
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(Shard::from_env(slurm), Ok(Shard::new(3, 4).unwrap()));
        // --array=1-4: ids from 1.
        let from_one = env(&[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(Shard::from_env(from_one), Ok(Shard::new(0, 4).unwrap()));
        // --array=0-12:4 is 4 tasks: 0, 4, 8, 12.
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "8"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_STEP", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(Shard::from_env(stepped), Ok(Shard::new(2, 4).unwrap()));
        let listed = env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert!(Shard::from_env(listed)
            .unwrap_err()
            .to_string()
            .contains("--array=0-(N-1)"));
        let k8s = env(&[("JOB_COMPLETION_INDEX", "1"), ("JOB_COMPLETIONS", "3")]);
        assert_eq!(Shard::from_env(k8s), Ok(Shard::new(1, 3).unwrap()));
    }

    #[test]
    fn auto_outside_a_scheduler_or_with_bad_variables_is_an_error() {
        assert_eq!(Shard::from_env(env(&[])), Err(ShardError::NoScheduler));
        // A plain Slurm job (not an array) has SLURM_JOB_ID only.
        assert_eq!(
            Shard::from_env(env(&[("SLURM_JOB_ID", "12")])),
            Err(ShardError::NoScheduler)
        );
        let no_count = Shard::from_env(env(&[("SLURM_ARRAY_TASK_ID", "0")])).unwrap_err();
        assert!(no_count
            .to_string()
            .contains("SLURM_ARRAY_TASK_COUNT is not set"));
        let k8s_no_count = Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "0")])).unwrap_err();
        assert!(k8s_no_count
            .to_string()
            .contains("JOB_COMPLETIONS is not set"));
        let garbage = env(&[
            ("SLURM_ARRAY_TASK_ID", "x"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert!(Shard::from_env(garbage)
            .unwrap_err()
            .to_string()
            .contains("`x`"));
        let past = env(&[("JOB_COMPLETION_INDEX", "3"), ("JOB_COMPLETIONS", "3")]);
        assert_eq!(
            Shard::from_env(past),
            Err(ShardError::OutOfRange { index: 3, count: 3 })
        );
    }

    /// Every item has exactly one owner, owners are contiguous, and shards are in balance.
    #[test]
    fn shards_split_items_once_each_and_in_balance() {
        for (lens, count) in [
            (vec![8; 50], 4),
            (vec![128; 7], 3),
            (vec![32, 32, 32, 5, 16, 16, 3], 2),
            (vec![8; 3], 5),
        ] {
            let total: usize = lens.iter().sum();
            let mut sizes = vec![0; count];
            let mut start = 0;
            let mut last_owner = 0;
            for &len in &lens {
                let owners: Vec<usize> = (0..count)
                    .filter(|&k| Shard::new(k, count).unwrap().owns(start, len, total))
                    .collect();
                assert_eq!(owners.len(), 1, "{lens:?} / {count}");
                assert!(owners[0] >= last_owner, "contiguous");
                last_owner = owners[0];
                sizes[owners[0]] += len;
                start += len;
            }
            let biggest = *lens.iter().max().unwrap();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 2 * biggest, "{lens:?} over {count}: {sizes:?}");
        }
    }
}
