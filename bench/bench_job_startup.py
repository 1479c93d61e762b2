"""A job's start-up: the wall time of a fresh interpreter that imports what a workflow script
imports from featlab, before the job computes anything; the median of `--runs` runs per script,
in one run against a baseline checkout (`--baseline`, the src/ folder of another checkout, for
example the main branch's), with the runs of the two alternated so both see the same load.

Every job of the workflow is such a process, so this is what each of a rule's jobs pays. The
import statements are read from the script (its module-level `featlab` imports); the script
itself, which needs `snakemake`, is not run. Bytecode is cached as under `make demo`, and one
untimed run per script and checkout comes first. The last column lists the heavy packages that
this checkout's imports load. A package that a module imports inside the function that needs it
is paid later in the job that calls it, not saved: a job that builds a backbone still imports
timm, and one that trains a mapping torch. Run from the repository root:

    .venv/bin/python bench/bench_job_startup.py --baseline ../main/src --runs 5
    .venv/bin/python bench/bench_job_startup.py --all
"""

import argparse
import ast
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The job scripts of the default study's most frequent rules, most jobs first (`snakemake -n`).
FREQUENT = [
    "fit_mappings",  # fit_closed_forms and train_mappings
    "invert_featinv",
    "fit_mapping",  # evaluate_baseline
    "extract",
    "gather_features",
    "plot_featinv_grid",
    "semantic_consistency",
]
HEAVY = ["torch", "timm", "torchvision", "diffusers", "transformers", "lpips", "scipy"]
HEAVY += ["matplotlib", "pandas", "zarr"]


def featlab_imports(script: Path) -> str:
    """The script's module-level featlab import statements, as one line of Python."""
    tree = ast.parse(script.read_text())
    statements = [
        ast.unparse(node)
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom) and "featlab" in ast.unparse(node)
    ]
    return "; ".join(statements)


def run(code: str, src: Path) -> tuple[float, str]:
    """Wall seconds of `python -c code` with featlab from `src`, and what the process printed."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as make demo: compiled bytecode is cached
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{code!r} with {src} failed:\n{done.stderr}")
    return seconds, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scripts", nargs="*", help=f"workflow script names (default: {FREQUENT})")
    parser.add_argument("--all", action="store_true", help="every script in workflow_scripts/")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per script and checkout")
    parser.add_argument("--baseline", type=Path, help="another checkout's src/ folder")
    args = parser.parse_args()
    names = args.scripts or FREQUENT
    if args.all:
        names = sorted(path.stem for path in (REPO / "workflow_scripts").glob("*.py"))
    checkouts = {"this": REPO / "src"}
    if args.baseline is not None:
        checkouts = {"baseline": args.baseline.resolve(), **checkouts}
    report = f"import sys; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"

    print(f"median wall s of {args.runs} runs; python {sys.version.split()[0]}")
    for name, src in checkouts.items():
        print(f"{name}: {src}")
    header = f"{'script':<22}" + "".join(f"{name:>10}" for name in checkouts)
    print(header + ("     ratio" if len(checkouts) == 2 else "") + "  loads (this)")
    for name in ["(python only)", *names]:
        if name == "(python only)":
            imports = "pass"
        else:
            imports = featlab_imports(REPO / "workflow_scripts" / f"{name}.py") or "pass"
        loaded = {key: run(f"{imports}; {report}", src)[1] for key, src in checkouts.items()}
        times: dict[str, list[float]] = {key: [] for key in checkouts}
        for _ in range(args.runs):
            for key, src in checkouts.items():
                times[key].append(run(imports, src)[0])
        medians = {key: statistics.median(values) for key, values in times.items()}
        line = f"{name:<22}" + "".join(f"{medians[key]:>10.2f}" for key in checkouts)
        if len(checkouts) == 2:
            line += f"{medians['baseline'] / medians['this']:>9.1f}x"
        print(f"{line}  {loaded['this']}", flush=True)


if __name__ == "__main__":
    main()
