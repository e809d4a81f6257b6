"""The package structure the architecture promises: the core is pure, imports run one way, and
importing a module builds nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "pipeline", "connectors", "agents", "gateway", "aiops")

OUTSIDE_WORLD = ("faust", "mode", "aiokafka", "fastapi", "starlette", "uvicorn", "httpx", "google", "kubernetes")
MAY_IMPORT: dict[str, set[str]] = {
    "schemas": set(),
    "pipeline": {"schemas"},
    "connectors": {"schemas", "pipeline"},
    "agents": {"schemas", "pipeline", "connectors"},
    "gateway": {"schemas", "pipeline", "connectors"},
    "aiops": {"schemas", "pipeline", "connectors", "agents", "gateway"},
}
"""Which of the project's packages each package may import (ARCHITECTURE.md draws the same)."""


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_the_core_and_the_schemas_import_nothing_that_speaks_to_the_outside_world():
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for package in ("pipeline", "schemas")
        for path in modules(package)
        for line, name in imports_of(path)
        if name.split(".")[0] in OUTSIDE_WORLD
    ]
    assert offending == []


def test_packages_import_each_other_in_one_direction_only():
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for package in PACKAGES
        for path in modules(package)
        for line, name in imports_of(path)
        if name.split(".")[0] in PACKAGES
        and name.split(".")[0] != package
        and name.split(".")[0] not in MAY_IMPORT[package]
    ]
    assert offending == []


def test_the_import_check_sees_a_banned_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("import os\nfrom aiokafka import AIOKafkaProducer\nfrom .x import y\n")
    assert imports_of(module) == [(1, "os"), (2, "aiokafka")]


IMPORT_EVERYTHING = """
import builtins, importlib, io, pathlib, sys
import aiokafka, faust

built = []
for cls in (faust.App, faust.Table, faust.Topic, aiokafka.AIOKafkaProducer, aiokafka.AIOKafkaConsumer):
    original = cls.__init__
    def record(self, *args, _original=original, _name=cls.__name__, **kwargs):
        built.append(_name)
        _original(self, *args, **kwargs)
    cls.__init__ = record

ours = tuple(str(pathlib.Path(package).resolve()) for package in PACKAGES)

def guard(read):
    def reading(*args, **kwargs):
        caller = sys._getframe(1).f_code.co_filename
        if caller.startswith(ours):
            raise AssertionError(f"{caller} read a file at import: {args[:1]}")
        return read(*args, **kwargs)
    return reading

builtins.open = io.open = guard(io.open)
for method in ("open", "read_text", "read_bytes"):
    setattr(pathlib.Path, method, guard(getattr(pathlib.Path, method)))
for name in sys.argv[1:]:
    importlib.import_module(name)
assert built == [], built
print(len(sys.argv) - 1)
"""


def test_importing_any_module_builds_no_app_topic_table_or_client_and_reads_no_file():
    names = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for package in PACKAGES
        for path in modules(package)
    ]
    done = subprocess.run(
        [sys.executable, "-c", f"PACKAGES = {PACKAGES!r}\n" + IMPORT_EVERYTHING, *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout) == len(names) > 30
