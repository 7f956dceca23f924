"""Reproducible mode: ``FEDZDA_REPRODUCIBLE=1`` pins torch's CPU kernel paths and threads so
that a config gives the same numbers on any x86-64 CPU with AVX2.

Float sums depend on the kernels a CPU runs (AVX-512 vs AVX2 vectors, oneDNN's blocking,
MKL's code path) and on the thread count. The mode makes them the same everywhere:
ATen's vector kernels at AVX2 (``ATEN_CPU_CAPABILITY``), MKL's conditional numerical
reproducibility at AVX2 (``MKL_CBWR``), oneDNN off (convolutions run as im2col + MKL
GEMM; oneDNN picks blocking by cache size) and one torch thread. It costs speed
(``docs/running.md`` gives the ratio). :func:`apply` runs when :mod:`fedcore` is imported, so
every process of a run (ServerApp, ClientApps, the core loop) is pinned before its first
torch operation.
"""

from __future__ import annotations

import os

import torch

ENV = "FEDZDA_REPRODUCIBLE"
PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # unused while oneDNN is off; pinned for any op that asks
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


class ReproducibleModeError(RuntimeError):
    """The reproducible mode cannot hold on this machine or in this process."""


def enabled() -> bool:
    """Whether this process runs in reproducible mode (``FEDZDA_REPRODUCIBLE=1``)."""
    return os.environ.get(ENV, "") == "1"


def apply() -> None:
    """Pin kernels and threads (idempotent). Raises :class:`ReproducibleModeError` when the
    CPU lacks AVX2 or torch chose its kernels before the mode was applied."""
    os.environ.update(PINNED)
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False  # type: ignore[assignment]
    capability = torch.backends.cpu.get_cpu_capability()  # fixed from here on
    if capability != "AVX2":
        raise ReproducibleModeError(
            f"{ENV}=1 needs torch's AVX2 kernels, but this process runs {capability}: "
            "the CPU lacks AVX2, or torch ran an operation before fedcore was imported "
            f"(import fedcore first, or unset {ENV})"
        )
