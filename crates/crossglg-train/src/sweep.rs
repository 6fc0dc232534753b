//! Sweeps as independent runs: the plan (one run per auxiliary-class count and seed), each run
//! as a `crossglg train` command line, a Slurm job array over those lines, and a pool that runs
//! them as processes, one per GPU (or N at a time). Results are read back from the run
//! directories, so a sweep finished elsewhere (a cluster) is summarised the same way.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One run of a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepRun {
    pub auxiliary: usize,
    pub seed: u64,
    /// `<out>/aux<K>-seed<S>`.
    pub dir: PathBuf,
}

/// Every (size, seed) pair, sizes outermost.
pub fn plan(sizes: &[usize], seeds: &[u64], out: &Path) -> Vec<SweepRun> {
    sizes
        .iter()
        .flat_map(|&k| {
            seeds.iter().map(move |&s| SweepRun {
                auxiliary: k,
                seed: s,
                dir: out.join(format!("aux{k}-seed{s}")),
            })
        })
        .collect()
}

/// The arguments (after the program) that train `run`: the sweep's config and overrides, then
/// the run's own auxiliary count, seed and folder; `device` overrides the config's device.
pub fn train_args(
    config: &Path,
    overrides: &[String],
    run: &SweepRun,
    device: Option<&str>,
) -> Vec<String> {
    let mut a = vec![
        "train".to_string(),
        "--config".into(),
        config.display().to_string(),
    ];
    for o in overrides {
        a.extend(["--set".into(), o.clone()]);
    }
    a.extend([
        "--set".into(),
        format!("data.auxiliary={}", run.auxiliary),
        "--set".into(),
        format!("seed={}", run.seed),
    ]);
    if let Some(d) = device {
        a.extend(["--set".into(), format!("device={d}")]);
    }
    a.extend([
        "--out".into(),
        run.dir.display().to_string(),
        "--quiet".into(),
    ]);
    a
}

/// `s` quoted for a POSIX shell (unchanged when it needs no quoting).
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// One shell command line per run.
pub fn command_lines(program: &str, args: &[Vec<String>]) -> Vec<String> {
    args.iter()
        .map(|a| {
            std::iter::once(program)
                .chain(a.iter().map(String::as_str))
                .map(shell_quote)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// A Slurm job array: task `i` runs line `i + 1` of `commands` (one GPU each).
pub fn slurm_script(commands: &Path, runs: usize, name: &str) -> String {
    format!(
        "#!/usr/bin/env bash\n\
         # Written by `crossglg sweep --slurm`: one array task per run of the sweep, each on one\n\
         # GPU. Submit with `sbatch {script}`; summarise with the same sweep command and --collect.\n\
         #SBATCH --job-name={name}\n\
         #SBATCH --array=0-{last}\n\
         #SBATCH --gres=gpu:1\n\
         #SBATCH --cpus-per-task=8\n\
         #SBATCH --output={name}-%a.log\n\
         set -euo pipefail\n\
         line=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {commands})\n\
         echo \"task $SLURM_ARRAY_TASK_ID: $line\"\n\
         eval \"$line\"\n",
        script = shell_quote(&format!("{name}.sbatch")),
        last = runs.saturating_sub(1),
        commands = shell_quote(&commands.display().to_string()),
    )
}

/// How the pool places runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slots {
    /// One run per listed GPU at a time, `CUDA_VISIBLE_DEVICES` set to it.
    Gpus(Vec<String>),
    /// This many runs at a time, the environment left as it is.
    Processes(usize),
}

/// What became of one run in the pool.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub run: SweepRun,
    /// Where its stdout and stderr went (`<dir>.log`).
    pub log: PathBuf,
    pub ok: bool,
}

/// Runs `program args[i]` for every run, at most one per slot at a time, each with its output
/// in `<run dir>.log`; returns when all have ended (a failed run does not stop the others).
pub fn run_pool(
    program: &Path,
    runs: &[SweepRun],
    args: &[Vec<String>],
    slots: &Slots,
) -> std::io::Result<Vec<RunOutcome>> {
    let slot_env: Vec<Option<String>> = match slots {
        Slots::Gpus(g) => g.iter().cloned().map(Some).collect(),
        Slots::Processes(n) => vec![None; (*n).max(1)],
    };
    let mut busy: Vec<Option<(usize, Child)>> = (0..slot_env.len()).map(|_| None).collect();
    let mut outcomes: Vec<Option<RunOutcome>> = vec![None; runs.len()];
    let mut next = 0;
    let log_of = |r: &SweepRun| r.dir.with_extension("log");
    loop {
        for (slot, state) in busy.iter_mut().enumerate() {
            if let Some((i, child)) = state {
                if let Some(status) = child.try_wait()? {
                    outcomes[*i] = Some(RunOutcome {
                        run: runs[*i].clone(),
                        log: log_of(&runs[*i]),
                        ok: status.success(),
                    });
                    *state = None;
                }
            }
            if state.is_none() && next < runs.len() {
                let log = log_of(&runs[next]);
                if let Some(parent) = log.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let out = std::fs::File::create(&log)?;
                let mut cmd = Command::new(program);
                // each run is a process of its own, not a rank of a data-parallel run the sweep
                // itself may have been started in
                for v in crate::dist::LAUNCH_VARS {
                    cmd.env_remove(v);
                }
                cmd.args(&args[next])
                    .stdin(Stdio::null())
                    .stdout(out.try_clone()?)
                    .stderr(out);
                if let Some(gpu) = &slot_env[slot] {
                    cmd.env("CUDA_VISIBLE_DEVICES", gpu);
                }
                *state = Some((next, cmd.spawn()?));
                next += 1;
            }
        }
        if next >= runs.len() && busy.iter().all(Option::is_none) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(outcomes.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_commands_and_quoting() {
        let runs = plan(&[20, 40], &[0, 1], Path::new("runs/s"));
        assert_eq!(runs.len(), 4);
        assert_eq!(runs[1].dir, Path::new("runs/s/aux20-seed1"));
        let args = train_args(
            Path::new("c.toml"),
            &["model.guidance=\"none\"".into()],
            &runs[3],
            Some("cuda:0"),
        );
        let line = &command_lines("crossglg", &[args])[0];
        assert_eq!(
            line,
            "crossglg train --config c.toml --set 'model.guidance=\"none\"' --set \
             data.auxiliary=40 --set seed=1 --set device=cuda:0 --out runs/s/aux40-seed1 --quiet"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        let s = slurm_script(Path::new("runs/s/commands.txt"), 4, "sweep");
        assert!(
            s.contains("#SBATCH --array=0-3") && s.contains("--gres=gpu:1"),
            "{s}"
        );
        assert!(s.contains("sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" runs/s/commands.txt"));
    }

    #[test]
    fn the_pool_runs_everything_within_its_slots_and_reports_failures() {
        let dir = tempfile::tempdir().unwrap();
        let runs = plan(&[1, 2, 3], &[7], dir.path());
        // each "run" records the GPU it was given, then fails for size 2
        let args: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                vec![
                    "-c".into(),
                    format!("echo gpu=$CUDA_VISIBLE_DEVICES; test {} != 2", r.auxiliary),
                ]
            })
            .collect();
        let out = run_pool(
            Path::new("/bin/sh"),
            &runs,
            &args,
            &Slots::Gpus(vec!["0".into(), "1".into()]),
        )
        .unwrap();
        assert_eq!(out.len(), 3);
        let ok: Vec<bool> = out.iter().map(|o| o.ok).collect();
        assert_eq!(ok, [true, false, true]);
        for o in &out {
            let log = std::fs::read_to_string(&o.log).unwrap();
            assert!(log == "gpu=0\n" || log == "gpu=1\n", "{log}");
        }
    }
}
