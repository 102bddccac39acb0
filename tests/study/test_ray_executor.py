"""`run --executor ray` on a real local Ray cluster the tests start (2 CPU workers): the study comes
out byte-identical to a local run, also when a worker is killed in the middle of a unit (the unit
is started again with its received samples as done: nothing lost, nothing counted twice); with
``--retries 0`` the same kill stops the run with its samples kept, and ``--resume`` finishes it.
Without Ray installed the option is refused naming the extra. 2 speakers x 2 texts x 3 cells x
seed 0 (12 samples, 0.4 s), tiny set; every run is a console-script process, as a user starts it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from bark_ablation import cli
from bark_ablation.study.ray_executor import TASK_PREFIX
from bark_ablation.study.resume import partial_path

STATISTICS = ("secs.csv", "cells.csv", "differences.csv", "effects.csv", "transfer.csv", "speakers.csv")
TEXTS = "One small step.\nA giant leap.\n"
STUDY = [
    "run",
    "--prompts",
    "en_speaker_0",
    "en_speaker_1",
    "--seeds",
    "0",
    "--cells=scf,s--,---",
    "--model-set",
    "tiny",
    "--max-duration",
    "0.4",
    "--quiet",
]
SAMPLES, PER_UNIT = 12, 3


def console_script() -> str:
    return str(Path(sys.executable).parent / "bark-ablation")


CLUSTER_TOKEN = secrets.token_hex(32)
"""The test cluster's authentication token (Ray's token authentication, kept on): the head and
every driver get it by RAY_AUTH_TOKEN, so nothing is read from or written to ~/.ray."""


def process_env() -> dict[str, str]:
    """The runs' processes use this session's torch thread count (Ray's tasks take the driver's),
    so that the local run and the cluster's make the same floats."""
    import torch

    return {
        **os.environ,
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": CLUSTER_TOKEN,
    }


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("texts") / "texts.txt"
    path.write_text(TEXTS, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, texts_file) -> Path:
    out = tmp_path_factory.mktemp("local") / "run"
    done = subprocess.run(
        [console_script(), *STUDY, "--texts-file", str(texts_file), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=process_env(),
    )
    assert done.returncode == 0, done.stderr
    return out


AGENT_PORTS = (
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "metrics-export-port",
    "runtime-env-agent-port",
)
"""Ports `ray start` otherwise takes at fixed numbers (52365, ...): free ones, beside another session's cluster."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """A one-node cluster with 2 CPUs (2 workers), started with `ray start --block` on free ports
    and a short temporary directory (Ray's socket paths must stay under 108 characters); stopping
    that process stops the cluster, and nothing else on the machine (never `ray stop`, which stops
    every Ray cluster of the machine's user)."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'bark-ablation[ray]'")
    if not Path("/proc").is_dir():
        pytest.skip("finding a Ray worker to kill reads /proc (Linux)")
    temp_dir = tempfile.mkdtemp(prefix="ba-ray-", dir="/tmp")
    port = free_port()
    head = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ray"),
            "start",
            "--head",
            "--block",
            "--num-cpus=2",
            "--num-gpus=0",
            f"--port={port}",
            f"--temp-dir={temp_dir}",
            *(f"--{name}={free_port()}" for name in AGENT_PORTS),
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=process_env(),
        start_new_session=True,
    )
    lines = []
    for line in head.stdout:  # `ray start` says when the node is up
        lines.append(line)
        if "Ray runtime started" in line:
            break
    else:
        pytest.fail("ray start failed:\n" + "".join(lines))
    try:
        yield {"address": f"127.0.0.1:{port}", "head": head.pid}
    finally:
        head.terminate()  # `ray start --block` stops the processes it started (about 2 s)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        head.stdout.close()
        subprocess.run(["rm", "-rf", temp_dir], check=False)


def descendants(root: int) -> set[int]:
    """Every process below ``root`` (read from /proc), so that only this test's cluster is touched."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def unit_workers(cluster: dict) -> dict[str, int]:
    """Unit id -> pid of the worker process of ``cluster`` running that unit's task (its title names it)."""
    workers = {}
    for pid in descendants(cluster["head"]):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if title.startswith(f"ray::{TASK_PREFIX}"):
            workers[title[len(f"ray::{TASK_PREFIX}") :]] = pid
    return workers


def samples_on_disk(out: Path) -> dict[str, int]:
    """Unit id -> samples written so far into the run's partial directory."""
    units = partial_path(out) / "units"
    if not units.is_dir():
        return {}
    return {unit.name: len(list((unit / "tokens").glob("*.npz"))) for unit in units.iterdir()}


def run_killing_a_worker_mid_unit(out: Path, texts_file: Path, cluster: dict, *extra: str):
    """The study on the cluster; once some unit has part of its samples on disk, SIGKILL the
    worker running that unit. Returns the finished process and the unit killed."""
    command = [console_script(), *STUDY, "--texts-file", str(texts_file), "--executor", "ray"]
    command += ["--address", cluster["address"], *extra, "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=process_env())
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and process.poll() is None and time.monotonic() < deadline:
        for unit, pid in unit_workers(cluster).items():
            if not 0 < samples_on_disk(out).get(unit, 0) < PER_UNIT:
                continue
            # Stopped, the worker sends nothing more; once the driver has written all it sent, the
            # unit is still short of samples only if the worker is truly in its middle.
            os.kill(pid, signal.SIGSTOP)
            time.sleep(0.5)
            if 0 < samples_on_disk(out).get(unit, 0) < PER_UNIT:
                os.kill(pid, signal.SIGKILL)
                killed = unit
                break
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.02)
    stdout, stderr = process.communicate(timeout=600)
    assert killed is not None, f"no worker was caught mid-unit:\n{stderr}"
    return process.returncode, stdout, stderr, killed


def assert_same_study(out: Path, local: Path) -> None:
    for name in STATISTICS:
        assert (out / name).is_file() == (local / name).is_file(), name
        if (local / name).is_file():
            assert (out / name).read_bytes() == (local / name).read_bytes(), f"{name} differs from the local run's"
    wavs = sorted(p.relative_to(local) for p in local.rglob("*.wav"))
    assert wavs == sorted(p.relative_to(out) for p in out.rglob("*.wav")) and len(wavs) > SAMPLES
    for wav in wavs:
        assert (out / wav).read_bytes() == (local / wav).read_bytes(), wav
    tokens = sorted(p.relative_to(local) for p in local.rglob("tokens/*.npz"))
    assert len(tokens) == SAMPLES and tokens == sorted(p.relative_to(out) for p in out.rglob("tokens/*.npz"))
    for path in tokens:  # the token arrays (the files also hold the stages' timings)
        with np.load(local / path) as expected, np.load(out / path) as found:
            for stage in ("semantic", "coarse", "fine"):
                assert np.array_equal(found[stage], expected[stage]), f"{path}: {stage}"
    study, expected = (json.loads((d / "study.json").read_text()) for d in (out, local))
    assert study["reference"] == expected["reference"]  # "prompt fine codes decoded by model set 'tiny'"
    assert not partial_path(out).exists() and not list(out.rglob("*.tmp"))


def test_a_study_on_a_ray_cluster_equals_the_local_run_when_a_worker_dies_mid_unit(
    ray_cluster, local_run, texts_file, tmp_path
):
    out = tmp_path / "run"
    status, stdout, stderr, killed = run_killing_a_worker_mid_unit(out, texts_file, ray_cluster)
    assert status == 0, stderr
    assert_same_study(out, local_run)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["generations"] == SAMPLES
    assert summary["execution"] == {
        "executor": "ray",
        "units": 4,
        "samples": SAMPLES,
        "resumed_samples": 0,
        "skipped_units": 0,
        "generated_samples": SAMPLES,  # each sample counted once, the killed unit's too
        "retried_units": {killed: 1},
    }
    assert f"retried after their worker died: {killed} x1" in stdout


def test_with_no_retries_a_dead_worker_stops_the_run_and_resume_finishes_it(
    ray_cluster, local_run, texts_file, tmp_path
):
    """The known-bad twin of the retry: the same kill with --retries 0 fails the run, naming the
    unit; the samples received are kept, and --resume on the cluster completes the same study."""
    out = tmp_path / "run"
    status, stdout, stderr, killed = run_killing_a_worker_mid_unit(out, texts_file, ray_cluster, "--retries", "0")
    assert status == cli.EXIT_USAGE
    assert f"unit {killed}: its worker died 1 times (--retries 0)" in stderr and f"--resume {out}" in stderr
    kept = samples_on_disk(out)
    assert 0 < kept[killed] < PER_UNIT and not out.exists()
    command = [console_script(), *STUDY, "--texts-file", str(texts_file), "--executor", "ray"]
    done = subprocess.run(
        [*command, "--address", ray_cluster["address"], "--resume", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=process_env(),
    )
    assert done.returncode == 0, done.stderr
    assert_same_study(out, local_run)
    execution = json.loads((out / "summary.json").read_text())["execution"]
    assert execution["resumed_samples"] == sum(kept.values())
    assert execution["generated_samples"] == SAMPLES - sum(kept.values())


def test_executor_options_are_refused_by_name_when_they_cannot_apply(tmp_path, capsys, monkeypatch):
    base = [*STUDY[:-1], "--text", "Hi.", "--out", str(tmp_path / "run")]
    assert cli.main([*base, "--address", "auto"]) == cli.EXIT_USAGE
    assert "--address: applies only with --executor ray" in capsys.readouterr().err
    assert cli.main([*base, "--retries", "2"]) == cli.EXIT_USAGE
    assert "--retries: applies only with --executor ray" in capsys.readouterr().err
    assert cli.main([*base, "--executor", "ray", "--device", "cuda:1"]) == cli.EXIT_USAGE
    assert "--device: with --executor ray it must be cpu or cuda" in capsys.readouterr().err
    assert cli.main([*base, "--executor", "ray", "--address", "ray://head:10001"]) == cli.EXIT_USAGE
    assert "--address: ray://head:10001: Ray Client (ray://) cannot stream" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    assert cli.main([*base, "--executor", "ray"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "--executor: ray needs Ray, which is not installed: pip install 'bark-ablation[ray]'" in err
    assert list(tmp_path.iterdir()) == []


README = Path(__file__).resolve().parents[2] / "README.md"
README_SECTION = "## Many GPUs or machines: Ray"
CPU_TINY = [
    "--device",
    "cpu",
    "--model-set",
    "tiny",
    "--seeds",
    "0",
    "--cells=scf,---",
    "--max-duration",
    "0.4",
    "--quiet",
]
"""What the test adds to the README's GPU command (the last option wins): this machine has no GPU
and no real weights, and two cells (with the 9 controls) keep it short; the rest runs as written,
on the local cluster the command starts itself."""


def readme_ray_command() -> list[str]:
    section = README.read_text(encoding="utf-8").split(README_SECTION, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.+?)\n```", section, re.DOTALL).group(1)
    lines = [line.split("#", 1)[0].strip() for line in block.replace("\\\n", " ").splitlines()]
    [command] = [shlex.split(line) for line in lines if line.startswith("bark-ablation run")]
    return command


def test_the_readme_command_starts_its_own_cluster_and_writes_the_study(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'bark-ablation[ray]'")
    argv = readme_ray_command()
    assert (
        argv[argv.index("--executor") + 1] == "ray" and "--address" not in argv and argv[-2:] == ["--out", "runs/study"]
    )
    out = tmp_path / "study"
    command = [console_script(), *argv[1:-2], *CPU_TINY, "--out", str(out)]
    env = {k: v for k, v in process_env().items() if not k.startswith("RAY_AUTH")}  # the run's own cluster
    token_file = Path.home() / ".ray" / "auth_token"
    before = token_file.read_bytes() if token_file.exists() else None
    done = subprocess.run(command, cwd=README.parent, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    assert (token_file.read_bytes() if token_file.exists() else None) == before  # its token lives in its environment
    summary = json.loads((out / "summary.json").read_text())
    prompts = argv[argv.index("--prompts") + 1 : argv.index("--texts-file")]
    units = len(prompts) * 2  # examples/study-texts.txt: 2 texts
    assert summary["execution"]["executor"] == "ray" and summary["execution"]["units"] == units
    assert summary["generations"] == units * (2 + 9) and (out / "secs.csv").is_file()
    assert "nothing retried" in done.stdout


def test_a_unit_on_another_device_class_is_refused_by_name():
    """Tokens are comparable only within a device class: a heterogeneous cluster's unit that ran
    on another GPU kind stops the run, naming the unit and both classes."""
    from bark_ablation.core.errors import ExecutorError
    from bark_ablation.core.prompts import load_prompt
    from bark_ablation.study import ray_executor
    from bark_ablation.study.design import Unit

    unit = Unit(load_prompt("en_speaker_0"), 1, "Hi.", None)
    ray_executor._check_device_class(unit, "cuda-sm80-bf16", "cuda-sm80-bf16")  # the same class passes
    with pytest.raises(
        ExecutorError, match=r"unit en_speaker_0_t1 ran on device class cuda-sm90-bf16, the run's is cuda-sm80-bf16"
    ):
        ray_executor._check_device_class(unit, "cuda-sm90-bf16", "cuda-sm80-bf16")


def test_a_cluster_where_no_node_can_run_a_unit_is_refused_by_name(ray_cluster, tmp_path):
    """--device cuda on the 2-CPU cluster: named at once, where Ray would wait for a GPU forever."""
    command = [console_script(), *STUDY, "--text", "Hi.", "--executor", "ray", "--address", ray_cluster["address"]]
    done = subprocess.run(
        [*command, "--device", "cuda", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        env=process_env(),
    )
    assert done.returncode == cli.EXIT_USAGE
    assert "no node of the Ray cluster can run a unit: each asks for 1 CPU and 1 GPU (--device cuda" in done.stderr
    assert "the largest node has 2 CPU and 0 GPU" in done.stderr and list(tmp_path.iterdir()) == []
