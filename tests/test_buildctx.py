import io
import tarfile

import pytest

from mm4watch.core import config
from mm4watch.core.errors import ConfigError
from mm4watch.remote import buildctx


def names(ctx):
    with tarfile.open(fileobj=io.BytesIO(ctx.data)) as tar:
        return sorted(m.name for m in tar.getmembers() if m.isfile())


@pytest.fixture
def proj(tmp_path):
    (tmp_path / "mm4.toml").write_text("[run]\n")
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim\n")
    (tmp_path / "requirements.txt").write_text("numpy\n")
    for rel in (
        "src/lib.py",
        "notebooks/helper.py",
        "notebooks/a.ipynb",
        "data/big.bin",
        "results/r/run.json",
        ".git/HEAD",
        ".mm4/history.sqlite",
        "notebooks/.ipynb_checkpoints/a-checkpoint.ipynb",
        "src/__pycache__/lib.cpython-311.pyc",
        "logs/x.log",
        "logs/keep.log",
        "docs/deep/x.md",
    ):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    return tmp_path


def test_context_contents(proj):
    (proj / ".dockerignore").write_text("# comment\nlogs\n!logs/keep.log\n**/*.md\n")
    ctx = buildctx.make(config.load(proj))
    assert names(ctx) == [
        ".dockerignore",
        "Dockerfile",
        "logs/keep.log",
        "mm4.toml",
        "notebooks/helper.py",
        "requirements.txt",
        "src/lib.py",
    ]


def test_hash_ignores_notebooks_and_data_but_not_code(proj):
    cfg = config.load(proj)
    first = buildctx.make(cfg)
    assert buildctx.make(cfg).digest == first.digest  # deterministic
    (proj / "notebooks" / "a.ipynb").write_text("edited")
    (proj / "data" / "big.bin").write_text("more data")
    assert buildctx.make(cfg).digest == first.digest
    (proj / "src" / "lib.py").write_text("changed")
    assert buildctx.make(cfg).digest != first.digest


def test_missing_dockerfile(tmp_path):
    with pytest.raises(ConfigError, match="no Dockerfile"):
        buildctx.make(config.load(tmp_path))


@pytest.mark.parametrize(
    "pattern, path, ignored",
    [
        ("*.log", "a.log", True),
        ("*.log", "d/a.log", False),
        ("**/*.log", "d/a.log", True),
        ("build", "build/x/y", True),
        ("/build", "build", True),
        ("b?ild", "build", True),
        ("docs/*.md", "docs/a/b.md", False),
    ],
)
def test_dockerignore_patterns(pattern, path, ignored):
    assert buildctx.is_ignored(path, [(False, buildctx._pattern(pattern))]) is ignored


def test_base_images():
    text = "FROM python:3.11-slim AS build\nRUN x\nFROM build\nFROM --platform=linux/arm64 debian:12\nFROM scratch\n"
    assert buildctx.base_images(text) == ["python:3.11-slim", "debian:12"]


def test_folders_of_notebooks_exist_in_the_context(proj):
    (proj / "reports").mkdir()
    (proj / "reports" / "only.ipynb").write_text("{}")
    with tarfile.open(fileobj=io.BytesIO(buildctx.make(config.load(proj)).data)) as tar:
        dirs = {m.name for m in tar.getmembers() if m.isdir()}
    assert {"notebooks", "reports", "src"} <= dirs and not {"data", "results", ".git"} & dirs


def test_mac_droppings_change_no_context(proj):
    cfg = config.load(proj)
    before = buildctx.make(cfg)
    for folder in (proj, proj / "notebooks", proj / "src"):
        (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (folder / "._lib.py").write_bytes(b"\0\5\26\7")
        (folder / ".localized").write_bytes(b"")
    (proj / "Icon\r").write_bytes(b"")
    after = buildctx.make(cfg)
    assert after.digest == before.digest and names(after) == names(before)
    (proj / "src" / "new.py").write_text("x = 1\n")  # a real file still counts
    assert buildctx.make(cfg).digest != before.digest
