"""The tiny workflow through profiles/slurm on a real single-node SLURM equals a local run.

The SLURM is Debian's `slurm-wlm` with `munge` (.ci/run installs both), started here as root:
munged as the munge user, then slurmctld, then slurmd, every file of theirs in temporary
directories (SLURM_CONF points the daemons and the clients at them), and stopped by PID.
"""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from tiny_study import REPO, SNAKEMAKE, WORKFLOW_FILES

PROFILE = REPO / "profiles" / "slurm"
TEST_PROFILE = REPO / "tests" / "data" / "slurm_profile"
# Debian installs the daemons in sbin, which a non-login PATH may lack.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
PROGRAMS = ("munged", "slurmctld", "slurmd", "sinfo", "squeue", "sbatch", "srun", "scontrol")

pytestmark = pytest.mark.slow


def free_ports(n: int) -> list[int]:
    """`n` distinct ports free now, so that no other SLURM's daemons answer."""
    probes = [socket.socket() for _ in range(n)]
    for probe in probes:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in probes]
    for probe in probes:
        probe.close()
    return ports


def node_hardware(slurmd: str) -> str:
    """`slurmd -C`'s CPU layout and RealMemory, without its NodeName."""
    first = subprocess.run([slurmd, "-C"], capture_output=True, text=True, check=True).stdout
    fields = first.splitlines()[0].split()
    return " ".join(field for field in fields if not field.startswith("NodeName="))


def slurm_conf(root: Path, munge_socket: Path, hardware: str) -> str:
    """A one-node cluster without cgroups or accounting (the settings of issue 8's trial)."""
    host = socket.gethostname()
    controller_port, node_port = free_ports(2)
    return f"""\
ClusterName=featlab
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={controller_port}
SlurmdPort={node_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
MinJobAge=600
ReturnToService=2
NodeName=localhost NodeHostname={host} NodeAddr=127.0.0.1 {hardware} State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def start(command: list[str], log: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        command, stdout=log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs
    )


def wait_for(condition, what: str, daemons: list, logs: list[Path], timeout: float = 60) -> None:
    """Poll `condition` until it holds; fail with the daemons' logs when one exits or time is up."""
    deadline = time.monotonic() + timeout
    while not condition():
        stopped = [daemon.args[0] for daemon in daemons if daemon.poll() is not None]
        if stopped or time.monotonic() > deadline:
            tails = "\n".join(f"{log}:\n{log.read_text()[-2000:]}" for log in logs if log.exists())
            reason = f"{', '.join(stopped)} exited" if stopped else f"{timeout:.0f} s passed"
            raise RuntimeError(f"{what}: {reason}\n{tails}")
        time.sleep(0.5)


def start_munged(munged: str, directory: Path) -> subprocess.Popen:
    """munged as the munge user, with its own key, socket and log in `directory`."""
    shutil.chown(directory, "munge", "munge")
    directory.chmod(0o755)  # munged wants its socket's directory open to every client
    key = directory / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    shutil.chown(key, "munge", "munge")
    command = [munged, "--foreground", f"--socket={directory / 'munge.socket'}"]
    command += [f"--key-file={key}", f"--pid-file={directory / 'munged.pid'}"]
    command += [f"--log-file={directory / 'munged.log'}", f"--seed-file={directory / 'seed'}"]
    return start(command, directory / "munged.out", user="munge", group="munge")


def node_state(env: dict) -> str:
    command = ["sinfo", "--noheader", "--nodes=localhost", "--format=%t"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    return result.stdout.strip()


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running single-node SLURM: the environment its clients need, and its directory."""
    if os.geteuid() != 0:
        pytest.skip("starting munged and the SLURM daemons needs root")
    programs = {name: shutil.which(name, path=SEARCH_PATH) for name in PROGRAMS}
    missing = [name for name, path in programs.items() if path is None]
    if missing:
        pytest.skip(f"no {', '.join(missing)}: install Debian's slurm-wlm and munge")
    # 1. slurm.conf and the daemons' directories; munged's own, outside pytest's root-only
    #    temporary directories, which the munge user cannot enter.
    root = tmp_path_factory.mktemp("slurm")
    for name in ("state", "spool", "bin"):
        (root / name).mkdir()
    munge_dir = Path(tempfile.mkdtemp(prefix="featlab-munge-"))
    munge_socket = munge_dir / "munge.socket"
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, munge_socket, node_hardware(programs["slurmd"])))
    # 2. The slurm-jobstep executor drops SLURM_* variables, SLURM_CONF too, before it calls srun
    #    inside a job (clusters keep slurm.conf where srun looks by default): an srun first on
    #    PATH puts it back.
    shim = root / "bin" / "srun"
    shim.write_text(f'#!/bin/sh\nSLURM_CONF="{conf}" exec "{programs["srun"]}" "$@"\n')
    shim.chmod(0o755)
    path = os.pathsep.join([str(shim.parent), SEARCH_PATH])
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": path, "HF_HUB_OFFLINE": "1"}
    # 3. munged, slurmctld, slurmd; stopped by PID, last started first.
    logs = [munge_dir / "munged.out", root / "slurmctld.log", root / "slurmd.log"]
    daemons = []
    try:
        daemons.append(start_munged(programs["munged"], munge_dir))
        wait_for(munge_socket.exists, "munged made no socket", daemons, logs)
        daemons.append(start([programs["slurmctld"], "-D"], root / "slurmctld.out", env=env))
        daemons.append(
            start([programs["slurmd"], "-D", "-N", "localhost"], root / "slurmd.out", env=env)
        )
        wait_for(lambda: node_state(env) == "idle", "the node is not idle", daemons, logs)
        yield {"env": env, "dir": root}
    finally:
        for daemon in reversed(daemons):
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        shutil.rmtree(munge_dir, ignore_errors=True)


def copy_workflow(source: Path, workdir: Path) -> Path:
    """The workflow files and config of the run in `source`, without its results, in `workdir`."""
    workdir.mkdir()
    for name in (*WORKFLOW_FILES, "config.yaml"):
        if (source / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(source / name, workdir / name, ignore=ignore)
        else:
            shutil.copy2(source / name, workdir / name)
    return workdir


def run_snakemake(workdir: Path, env: dict, *args: str) -> None:
    command = [str(SNAKEMAKE), "--configfile", "config.yaml", *args]
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"snakemake {args} failed:\n{result.stdout[-4000:]}{result.stderr}")


def test_the_tiny_study_on_slurm_equals_a_local_run(slurm, study, tmp_path):
    # 1. `study` is the tiny study's local run (conftest.py); the same files through the profile.
    on_slurm = copy_workflow(study["dir"], tmp_path / "slurm")
    run_snakemake(
        on_slurm, slurm["env"], "--profile", str(PROFILE), "--workflow-profile", str(TEST_PROFILE)
    )
    # 2. The jobs ran in SLURM: one SLURM log per job ({rule or group}/.../{job id}.log), the
    #    profile's three groups among them, and slurmctld saw each of those jobs exit with 0.
    logs = list((on_slurm / "results" / "slurm_logs").rglob("*.log"))
    kinds = {log.relative_to(on_slurm / "results" / "slurm_logs").parts[0] for log in logs}
    groups = {kind.split("_")[1] for kind in kinds if kind.startswith("group_")}
    assert groups == {"fits", "train", "plots"}
    assert {"rule_train_backbone", "rule_extract", "rule_aggregate"} <= kinds
    controller = (slurm["dir"] / "slurmctld.log").read_text()
    succeeded = set(re.findall(r"_job_complete: JobId=(\d+) WEXITSTATUS 0$", controller, re.M))
    assert {log.stem for log in logs} == succeeded
    # 3. Both runs wrote the same table, to the bit: the jobs are seeded, and a job runs the same
    #    code with the same threads on the same machine, whether SLURM or Snakemake starts it.
    table = Path("results", "tiny", "tables", "metrics.csv")
    local = (study["dir"] / table).read_text().splitlines()
    assert (on_slurm / table).read_text().splitlines() == local
