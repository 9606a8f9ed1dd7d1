"""mm4watch init: a commented mm4.toml, a Dockerfile (uv, a cache mount) and requirements.txt,
.gitignore lines, a sample tagged notebook.

Never overwrites: an existing file is left as it is and reported.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from ..core import config
from ..core.fsutil import atomic_write_text

REQUIREMENTS = "# what the notebooks import, one package per line (numpy, pandas, scikit-learn, ...)\n"


def gitignore_lines(cfg: config.Config) -> tuple[str, ...]:
    """What git should not see: run folders (wherever [project] results puts them), state, checkpoints."""
    return (f"{cfg.project.results.rstrip('/')}/", ".mm4/", ".ipynb_checkpoints/")


def init_project(root: Path) -> list[str]:
    """Set up ``root``; returns one line per action taken or skipped."""
    report: list[str] = []
    templates = resources.files("mm4watch") / "templates"

    toml_path = root / config.CONFIG_NAME
    if toml_path.exists():
        report.append(f"kept     {toml_path} (exists)")
    else:
        _create(toml_path, (templates / "mm4.toml").read_text(encoding="utf-8"))
        report.append(f"created  {toml_path}")

    cfg = config.load(root)
    made = {
        root / cfg.project.notebooks[0] / "00_test_remote.ipynb": (templates / "sample.ipynb").read_text(
            encoding="utf-8"
        ),
        # what a container executor builds: uv with a cache mount, papermill and ipykernel
        root / cfg.project.dockerfile: (templates / "Dockerfile").read_text(encoding="utf-8"),
        root / "requirements.txt": REQUIREMENTS,
    }
    for path, text in made.items():
        if path.exists():
            report.append(f"kept     {path} (exists)")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            _create(path, text)
            report.append(f"created  {path}")

    ignore = root / ".gitignore"
    existing = ignore.read_text(encoding="utf-8") if ignore.exists() else ""
    present = {line.strip() for line in existing.splitlines()}
    wanted = gitignore_lines(cfg)
    missing = [line for line in wanted if line not in present and line.rstrip("/") not in present]
    if missing:
        sep = "" if not existing or existing.endswith("\n") else "\n"
        atomic_write_text(ignore, existing + sep + "# mm4watch\n" + "".join(f"{m}\n" for m in missing))
        report.append(f"added    {', '.join(missing)} to {ignore}")
    else:
        report.append(f"kept     {ignore} (already ignores {', '.join(wanted)})")
    return report


def _create(path: Path, text: str) -> None:
    # 'x' mode: fails instead of overwriting a file that appeared meanwhile
    with open(path, "x", encoding="utf-8") as fh:
        fh.write(text)


def main(args: argparse.Namespace) -> int:
    root, _ = config.find_root()
    for line in init_project(root):
        print(line)
    cfg = config.load(root)
    print(f"next: mm4watch run {cfg.project.notebooks[0]}/00_test_remote.ipynb")
    return 0
