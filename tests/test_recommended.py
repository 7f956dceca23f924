"""Every recommended setting of the README's "Which to pick" ships as a ready experiment in
configs/ that loads and equals the tuned pick on the FMNIST-100 federation."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.fmnist100 import FMNIST100
from fedcore.algorithms import SECTIONS
from fedcore.config import load_config
from fedcore.schema import flatten

ROOT = Path(__file__).resolve().parent.parent
RECOMMENDED = {  # file -> (method, partition, the README's settings)
    "configs/recommended_c2.toml": (
        "zdas+scaffold", "c2", "train.lr=0.003 zdas.finetune_lr=0.0003"),
    "configs/recommended_dir01.toml": ("fedlc", "dir0.1", "fedlc.tau=16"),
}  # fmt: skip


@pytest.mark.parametrize("path", sorted(RECOMMENDED))
def test_recommended_config_is_the_tuned_pick(path):
    method, partition, setting = RECOMMENDED[path]
    shipped = load_config(path, "", ROOT)
    keys = FMNIST100.overrides(method, partition, 0, FMNIST100.rounds) + f" {setting}"
    unused = tuple(f"{s}." for s in SECTIONS if s not in method.split("+"))

    def used(cfg) -> dict:  # the yardstick also sets sections this method never reads
        return {k: v for k, v in flatten(cfg.to_dict()).items() if not k.startswith(unused)}

    assert used(shipped) == used(load_config(None, keys))
    readme = (ROOT / "README.md").read_text()
    assert path in readme and f'`algorithm = "{method}"`' in readme
