"""Where a number was made: the platform record every result file carries.

Float results depend on the CPU's instruction set, the BLAS and oneDNN code paths, the
thread count and the torch build; :func:`platform_info` records all of them, and
:func:`platform_kind` names the class of machines on which a result reproduces exactly.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedcore import reproducible

# the flags that choose kernels (x86 vector extensions; others are left out)
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni",
             "avx512_bf16", "amx_tile", "asimd", "sve")  # fmt: skip
KERNEL_VARS = ("FEDZDA_REPRODUCIBLE", "ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA",
               "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG")  # fmt: skip


def _cpuinfo() -> tuple[str, str, set[str]]:
    """CPU model name, vendor and flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor(), "", set()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags", fields.get("Features", ""))
    return (
        fields.get("model name", platform.processor()),
        fields.get("vendor_id", ""),
        set(flags.split()),
    )


def platform_kind() -> str:
    """The machines a result reproduces on: ``reproducible-avx2`` in reproducible mode (any
    x86-64 CPU with AVX2), else the CPU vendor, torch's kernel level and thread count (or
    the GPU), e.g. ``native-AuthenticAMD-AVX512-2threads``."""
    if torch.cuda.is_available():
        return f"cuda-{torch.cuda.get_device_name(0).replace(' ', '_')}"
    if reproducible.enabled():
        return "reproducible-avx2"
    vendor = _cpuinfo()[1] or platform.machine()
    cap = torch.backends.cpu.get_cpu_capability()
    return f"native-{vendor}-{cap}-{torch.get_num_threads()}threads"


def platform_info() -> dict[str, Any]:
    """This process's platform: CPU, ISA flags, kernel level, threads, versions, variables."""
    model, vendor, flags = _cpuinfo()
    return {
        "kind": platform_kind(),
        "reproducible": reproducible.enabled(),
        "machine": platform.machine(),
        "cpu": model,
        "vendor": vendor,
        "cpus": os.cpu_count(),
        "isa": [f for f in ISA_FLAGS if f in flags],
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn": bool(torch.backends.mkldnn.enabled),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "env": {k: os.environ[k] for k in KERNEL_VARS if k in os.environ},
    }
