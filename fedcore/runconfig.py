"""The schema written out: pyproject.toml's ``[tool.flwr.app.config]`` (every key with its
default, so Flower knows and checks every key), TOML run-config files, and
``docs/configuration.md`` (every key, its default and what it does).

    python -m fedcore.runconfig --write   # update pyproject.toml and docs/configuration.md
    python -m fedcore.runconfig           # print the pyproject table

Tests keep both files equal to what this module generates.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from fedcore.config import parse_overrides, read_experiment, validate
from fedcore.experiment import ExperimentConfig
from fedcore.schema import flatten, merge

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"


def pyproject_table(cfg: ExperimentConfig | None = None) -> str:
    """``[tool.flwr.app.config]`` for pyproject.toml: every key with its default."""
    lines: list[str] = []

    def emit(table: str, obj: Any) -> None:
        is_instance = dataclasses.is_dataclass(obj) and not isinstance(obj, type)
        items = dataclasses.asdict(obj) if is_instance else obj
        lines.append(f"\n[{table}]")
        subs = {k: v for k, v in items.items() if isinstance(v, dict)}
        for k, v in items.items():
            if k not in subs:
                lines.append(f"{k} = {toml_value(v)}")
        for k, v in subs.items():
            emit(f"{table}.{k}", v)

    emit("tool.flwr.app.config", cfg or ExperimentConfig())
    return "\n".join(lines).lstrip("\n") + "\n"


def to_toml(flat: dict[str, Any]) -> str:
    """Flat dotted keys as a TOML document Flower reads with ``--run-config file.toml``."""
    return "".join(f"{k} = {toml_value(v)}\n" for k, v in flat.items())


def run_config_file(
    experiment: str | Path | None, overrides: str, base_dir: str | Path
) -> tuple[str, ExperimentConfig]:
    """One TOML run config: the experiment file's keys, then ``overrides`` (which win);
    returned with the experiment it makes, validated as the app will validate it."""
    tree = read_experiment(experiment, base_dir) if experiment else {}
    tree = merge(tree, parse_overrides(overrides))
    return to_toml(flatten(tree)), validate(tree)


def toml_value(v: Any) -> str:
    """One value as TOML writes it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def write_pyproject(path: Path) -> None:
    """Replace ``[tool.flwr.app.config]`` and its sub-tables in ``path`` with the schema's."""
    text = path.read_text()
    start = text.index("[tool.flwr.app.config]")
    end = text.find("\n\n", text.rfind("[tool.flwr.app.config"))  # the last table's end
    end = len(text) if end < 0 else end + 2
    path.write_text(text[:start] + pyproject_table() + "\n" + text[end:])


def _field_notes(cls: type) -> dict[str, str]:
    """The trailing ``# comment`` of each field line in ``cls``'s source."""
    notes: dict[str, str] = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.+)$", line)
        if m:
            notes[m.group(1)] = m.group(2).strip()
    return notes


def _doc_first(cls: type) -> str:
    return (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")


def configuration_markdown() -> str:
    """``docs/configuration.md``: every key, its default and its note, section by section."""
    out = [
        "# Configuration reference",
        "",
        "Generated from the schema (`fedcore/experiment.py` and each algorithm's `Config`) by",
        "`python -m fedcore.runconfig --write`; a test keeps this file equal to it. Set keys",
        "with `flwr run . --run-config \"algorithm='zda' rounds=5\"`, a TOML file",
        "(`--run-config configs/fmnist_c1.toml`), or `bash scripts/run.sh FILE KEY=VALUE ...`.",
        "Every problem is reported at once, with its key and the fix.",
        "",
    ]

    def table(cls: type, obj: Any, prefix: str) -> None:
        notes = _field_notes(cls)
        scalars = [
            f for f in dataclasses.fields(obj) if not dataclasses.is_dataclass(getattr(obj, f.name))
        ]
        title = f"`{prefix.rstrip('.')}`" if prefix else "Top level"
        intro = _doc_first(cls).replace(":data:", "")
        out.extend([f"## {title}", "", intro, "", "| key | default | note |", "|---|---|---|"])
        for f in scalars:
            note = notes.get(f.name, "").replace("|", "\\|")
            out.append(f"| `{prefix}{f.name}` | `{toml_value(getattr(obj, f.name))}` | {note} |")
        out.append("")
        for f in dataclasses.fields(obj):
            sub = getattr(obj, f.name)
            if dataclasses.is_dataclass(sub):
                table(type(sub), sub, f"{prefix}{f.name}.")

    cfg = ExperimentConfig()
    table(type(cfg).__mro__[1], cfg, "")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_pyproject(ROOT / "pyproject.toml")
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(configuration_markdown())
    else:
        sys.stdout.write(pyproject_table())
