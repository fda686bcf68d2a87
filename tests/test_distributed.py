"""Data parallelism: 4 devices == 1 device, and a 2-process run through jax.distributed."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from psm_jax.data import datasets

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_one_step_on_4_devices_equals_1_device():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "data_parallel_check.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    differences = dict(re.findall(r"^(.+): ([0-9.e+-]+)$", result.stdout, re.MULTILINE))
    assert len(differences) == 3, result.stdout
    for model, difference in differences.items():
        assert float(difference) < 1e-5, f"{model}: {difference}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_together(tmp_path):
    data_dir = tmp_path / "tfds"
    datasets.build_dataset("synthetic_personal_saliency/tiny", data_dir=str(data_dir))
    port = _free_port()
    logs = [(tmp_path / f"process_{i}.log").open("w") for i in range(2)]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "launch" / "train.py"),
                "--config=psm_jax/configs/synthetic.py:multi_task,tiny",
                f"--workdir={tmp_path / 'run'}",
                f"--config.data_dir={data_dir}",
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ],
            cwd=ROOT,
            env=dict(os.environ, JAX_PLATFORMS="cpu"),
            stdout=logs[i],
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    try:
        codes = [process.wait(timeout=600) for process in processes]
    finally:
        for process in processes:
            process.kill()
    output = [(tmp_path / f"process_{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], output[0][-3000:] + output[1][-3000:]
    assert "multi_task trained in" in output[0]  # process 0 reports; both finished all steps
    assert (tmp_path / "run" / "checkpoints" / "6").is_dir()
