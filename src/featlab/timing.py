"""Where a study's time goes, read from the benchmark file Snakemake writes for every job.

    python -m featlab.timing results/shapes --top 10 --startup 1.3

prints the job-seconds of each rule (sum, job count, median), the slowest jobs and two estimates
of the time spent outside computation:

- waiting: wall minus CPU seconds of each job whose CPU time was recorded (I/O, and on a busy
  machine the wait for a free core). Snakemake samples a job's CPU time, every 0.5 s in its first
  30 s and every 30 s after, so the last interval is missed and waiting is an upper bound; a job
  that ends before the first sample has no CPU time (NA) and is left out of this estimate;
- start-up: every job is a fresh interpreter that imports torch and the library before it computes
  anything, which is CPU time the benchmark cannot tell apart; `--startup` gives its seconds per
  job (bench/bench_job_startup.py measures the job scripts' imports) and it is counted once a job.

A job's rule is the `rule_name` column that `snakemake --benchmark-extended` adds (the profiles
turn it on). Files without it are grouped by their folder under benchmarks/ instead: a job's
benchmark mirrors its output's path (featlab.study.paths), and some rules share a path scheme
(every mapping cell, for example), so a group may hold several rules.
"""

import argparse
import csv
from pathlib import Path

import pandas as pd


def read_benchmarks(study: str | Path) -> pd.DataFrame:
    """One row per job of `study` (a results/{study} folder): job, rule, wall s, cpu_time.

    `job` is the benchmark's path under benchmarks/ without `.tsv`; a file with several rows
    (Snakemake's `repeat`) counts once, with its mean.
    """
    folder = Path(study) / "benchmarks"
    files = sorted(folder.rglob("*.tsv"))
    if not files:
        raise FileNotFoundError(f"no benchmark files under {folder}; run the study first")
    rows = []
    for file in files:
        table = pd.read_csv(file, sep="\t", quoting=csv.QUOTE_NONE)  # params hold quotes
        job = file.relative_to(folder).with_suffix("").as_posix()
        rule = str(table["rule_name"].iloc[0]) if "rule_name" in table else folder_group(job)
        rows.append(
            {
                "job": job,
                "rule": rule,
                "s": table["s"].mean(),
                "cpu_time": pd.to_numeric(table["cpu_time"], errors="coerce").mean(),
            }
        )
    return pd.DataFrame(rows)


def folder_group(job: str) -> str:
    """The folder scheme of a job's benchmark: its stage folder, then `*` for each level below
    (features/cnn/original/00000 -> features/*/*/*), in brackets as it is not a rule's name."""
    stage, *rest = job.split("/")
    return "[" + "/".join([stage, *["*"] * len(rest)]) + "]"


def per_rule(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule: job count, summed and median wall seconds, share of all job-seconds, and the
    waiting seconds (wall - CPU, at least 0) of its jobs that have a CPU time; most time first."""
    jobs = jobs.assign(waiting=(jobs["s"] - jobs["cpu_time"]).clip(lower=0))
    table = jobs.groupby("rule").agg(
        jobs=("s", "size"),
        wall_s=("s", "sum"),
        median_s=("s", "median"),
        waiting_s=("waiting", "sum"),
    )
    table["share"] = table["wall_s"] / table["wall_s"].sum()
    table = table.reset_index().sort_values(["wall_s", "rule"], ascending=[False, True])
    return table.set_index("rule")[["jobs", "wall_s", "share", "median_s", "waiting_s"]]


def slowest(jobs: pd.DataFrame, n: int) -> pd.DataFrame:
    """The `n` jobs with the longest wall time, slowest first (ties by job path)."""
    ordered = jobs.sort_values(["s", "job"], ascending=[False, True]).head(n)
    return ordered.set_index("job")[["rule", "s", "cpu_time"]]


def outside_computation(jobs: pd.DataFrame, startup_s: float | None) -> list[str]:
    """Lines estimating the job-seconds spent outside computation (see the module docstring)."""
    total = jobs["s"].sum()
    timed = jobs.dropna(subset=["cpu_time"])
    waiting = (timed["s"] - timed["cpu_time"]).clip(lower=0).sum()
    lines = [
        f"waiting (wall - CPU): {waiting:.1f} s of the {timed['s'].sum():.1f} job-seconds of the "
        f"{len(timed)} of {len(jobs)} jobs with a CPU time ({_percent(waiting, timed['s'].sum())})"
    ]
    if startup_s is None:
        lines.append("start-up: give each job's start-up in seconds with --startup")
    else:
        startup = len(jobs) * startup_s
        lines.append(
            f"start-up: {len(jobs)} jobs x {startup_s:g} s = {startup:.1f} s of {total:.1f} "
            f"job-seconds ({_percent(startup, total)})"
        )
    return lines


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "n/a"


def report(study: str | Path, top: int = 10, startup_s: float | None = None) -> str:
    """The text `python -m featlab.timing` prints."""
    jobs = read_benchmarks(study)
    lines = [
        f"{len(jobs)} jobs, {jobs['s'].sum():.1f} job-seconds (summed over jobs that may have run "
        "side by side)",
        "",
        "per rule:",
        per_rule(jobs).to_string(float_format=lambda value: f"{value:.2f}"),
        "",
        f"the {min(top, len(jobs))} slowest jobs:",
        slowest(jobs, top).to_string(float_format=lambda value: f"{value:.2f}"),
        "",
        "outside computation:",
        *outside_computation(jobs, startup_s),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m featlab.timing", description=__doc__)
    parser.add_argument("study", help="the study's results folder, e.g. results/shapes")
    parser.add_argument("--top", type=int, default=10, help="how many slowest jobs to list")
    parser.add_argument(
        "--startup",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start-up of one job (interpreter and imports), from bench/bench_job_startup.py",
    )
    args = parser.parse_args(argv)
    print(report(args.study, args.top, args.startup))


if __name__ == "__main__":
    main()
