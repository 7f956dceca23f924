"""Print this project's requirements from pyproject.toml, one per line (for ``pip -r``).

    python scripts/deps.py [--extra dev] [--without torchvision ...]

Used where torch is installed on its own first: ``scripts/setup.sh``'s CPU-only path
(``--extra dev --without torchvision``) and the Docker image (``--without torch
--without torchvision``).
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def requirements(extras: list[str], without: list[str]) -> list[str]:
    """The project's dependencies plus ``extras``, minus the distributions in ``without``."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [r for r in reqs if re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0] not in without]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extra", action="append", default=[])
    ap.add_argument("--without", action="append", default=[])
    a = ap.parse_args()
    print("\n".join(requirements(a.extra, a.without)))


if __name__ == "__main__":
    main()
