"""The prepared GPU check runs end to end (tiny, on the CPU when there is no GPU)."""

import json
import subprocess
from pathlib import Path

from scripts.gpu_check import prepare

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_dry_run(tmp_path):
    data = prepare(tmp_path / "fmnist.npz", train=600, test=200)
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--dry-run", "--data", str(data), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads(out.read_text())
    assert res["dry_run"] and res["throughput"]["cpu"]["inversion_batch256"] > 0
    assert len(res["zda"]["accuracy"]) == 2 and res["zda_to_fedavg_round_ratio"] > 0
