"""What reproducible mode buys and costs: README command 1's federation, 2 rounds of FedAvg
and of zdas+scaffold (``benchmarks.golden``'s methods) through the core loop, each arm in a
fresh process under different kernel settings, one after the other in one invocation.

Arms: native (this machine's own kernels and threads), reproducible mode, and reproducible
mode under settings that would change native numbers (a higher MKL code path, oneDNN
allowed AVX-512, two OpenMP threads; the mode must override all of them). The mode
holds if every reproducible arm gives the same numbers; its cost is its seconds per round
over native's. This machine cannot show another CPU's AVX2 kernels, only that nothing of
this one's above AVX2 leaks in.

    .venv/bin/python -m benchmarks.studies.reproducible   # writes results/reproducible.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks.golden import METHODS
from benchmarks.yardstick import RESULTS, ROOT
from fedcore.provenance import platform_info

ARMS = {
    "native": {},
    "reproducible": {"FEDZDA_REPRODUCIBLE": "1"},
    "reproducible under MKL_CBWR=AVX512, ONEDNN_MAX_CPU_ISA=AVX512_CORE_AMX, 2 threads": {
        "FEDZDA_REPRODUCIBLE": "1", "MKL_CBWR": "AVX512",
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX", "OMP_NUM_THREADS": "2"},
}  # fmt: skip
CHILD = """
import json, sys, time
from benchmarks.golden import METHODS, core
from fedcore.provenance import platform_info
out = {"platform": platform_info(), "methods": {}}
for m in METHODS:
    out["methods"][m] = core(m)
print(json.dumps(out))
"""
KERNEL_VARS = ("FEDZDA_REPRODUCIBLE", "ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA",
               "OMP_NUM_THREADS", "MKL_NUM_THREADS")  # fmt: skip


def arm(extra: dict[str, str]) -> dict:
    """One arm in a fresh process (the kernel variables it does not set are unset)."""
    env = {k: v for k, v in os.environ.items() if k not in KERNEL_VARS} | extra
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    out: dict = {"platform": platform_info(), "arms": {}}
    for name, extra in ARMS.items():
        r = arm(extra)
        out["arms"][name] = {"env": extra, "kind": r["platform"]["kind"],
                             "cpu_capability": r["platform"]["torch_cpu_capability"],
                             "threads": r["platform"]["torch_threads"],
                             **{m: {"accuracy": [x["accuracy"] for x in v["rounds"]],
                                    "loss": [x["loss"] for x in v["rounds"]],
                                    "seconds": v["seconds"]}
                                for m, v in r["methods"].items()}}  # fmt: skip
        a = out["arms"][name]
        shown = "; ".join(f"{m} {a[m]['accuracy']} {a[m]['seconds']:.0f} s" for m in METHODS)
        print(f"{name}: {shown}", flush=True)
    arms = out["arms"]
    out["reproducible_arms_identical"] = all(
        arms[n][m]["accuracy"] == arms["reproducible"][m]["accuracy"]
        and arms[n][m]["loss"] == arms["reproducible"][m]["loss"]
        for n in arms if n != "native" for m in METHODS
    )  # fmt: skip
    out["cost"] = {m: arms["reproducible"][m]["seconds"] / arms["native"][m]["seconds"]
                   for m in METHODS}  # fmt: skip
    print(json.dumps({k: out[k] for k in ("reproducible_arms_identical", "cost")}))
    (RESULTS / "reproducible.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
