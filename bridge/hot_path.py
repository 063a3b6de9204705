"""The hot path's optional native build: the mapping engine and CSD writer compiled by mypyc (make compiled).

Leaf module, imported first by `bridge/__init__.py`: loads a build only while every source it was made from is
unchanged (else the sources, `STATE` saying why), so an edited source is never shadowed by an older build.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# The modules compiled together (one group: they call each other natively, so they load all compiled or all
# interpreted): what a translation spends its time in (README "Performance"; docs/performance-journal.md).
MODULES = (
    "bridge.translate.compiled",
    "bridge.translate.transforms",
    "bridge.translate.engine",
    "bridge.csd.writer",
)
# The group's shared library, inside the package (bridge/hot_path_native__mypyc.*.so).
GROUP = "bridge.hot_path_native"
# Written by the build next to this file: the sha256 at build time of each source the build depends on.
STAMP = "hot_path_build.json"
# The setting `hot_path` (bridge/config.py), read here from the environment: `interpreted` never loads the
# compiled modules (a comparison, a suspected compiler difference); `auto` (default) loads a current build.
SWITCH = "BRIDGE_HOT_PATH"

PACKAGE = Path(__file__).resolve().parent
# What this process runs: "compiled", or "interpreted (why)"; set by `guard`.
STATE = "interpreted (not checked yet)"


def _source(module: str) -> Path:
    """A module's source file: `bridge/x/y.py`, or a package's `__init__.py`."""
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _native(module: str) -> list[Path]:
    """The compiled files of `module` next to its source (any extension suffix of this interpreter)."""
    source = _source(module)
    return [
        source.with_name(source.stem + suffix)
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
        if source.with_name(source.stem + suffix).exists()
    ]


def dependencies() -> list[str]:
    """MODULES and every bridge module they import, transitively (read from their sources), sorted."""
    import ast

    found: set[str] = set()
    waiting = list(MODULES)
    while waiting:
        module = waiting.pop()
        if module in found or not _source(module).exists():
            continue
        found.add(module)
        for node in ast.walk(ast.parse(_source(module).read_bytes())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from bridge import model`: a module; `from bridge.model import X`: a name of one
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            waiting += [name for name in names if name == "bridge" or name.startswith("bridge.")]
    return sorted(found)


def digests(modules: Sequence[str]) -> dict[str, str]:
    """The sha256 of each module's source (absent when the file is gone)."""
    return {m: hashlib.sha256(_source(m).read_bytes()).hexdigest() for m in modules if _source(m).exists()}


class _Sources(importlib.abc.MetaPathFinder):
    """Imports MODULES from their sources even where a compiled build sits beside them."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, _source(fullname))


def guard() -> str:
    """Decide, before any of MODULES is imported, whether this process runs them compiled; returns `STATE`."""
    global STATE
    built = [module for module in MODULES if _native(module)]
    why = ""
    if not built:
        why = "not built: make compiled"
    elif os.environ.get(SWITCH, "").strip().lower() == "interpreted":
        why = f"{SWITCH}=interpreted"
    elif len(built) != len(MODULES):
        why = f"incomplete build: {', '.join(sorted(set(MODULES) - set(built)))} not compiled"
    else:
        try:
            recorded = json.loads((PACKAGE / STAMP).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = {}
        if not isinstance(recorded, dict) or not set(MODULES) <= set(recorded):
            recorded = dict.fromkeys(MODULES, "")  # no stamp, or not this build's: every module "changed"
        now = digests(list(recorded))
        changed = [module for module, digest in recorded.items() if now.get(module) != digest]
        if changed:
            why = f"stale build: {', '.join(changed)} changed since; make compiled"
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _Sources)]
    if why:
        if built:
            sys.meta_path.insert(0, _Sources())
        STATE = f"interpreted ({why})"
    else:
        STATE = "compiled"
    return STATE


_MYPY_SETTINGS = "[mypy]\nfollow_imports = silent\nignore_missing_imports = True\n"


def build() -> None:
    """Compile MODULES in place (mypyc, then the C compiler through setuptools) and record their digests.

    The build runs in a temporary directory that links to the package: the project's pyproject.toml (its
    package discovery, its mypy settings) stays out of it.
    """
    import tempfile

    from mypyc.build import mypycify  # the dev extra: mypy ships mypyc
    from setuptools import setup  # type: ignore[import-untyped]

    clean()
    here = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="bridge-hot-path-") as tmp:
        Path(tmp, "bridge").symlink_to(PACKAGE, target_is_directory=True)
        # mypyc type-checks what the compiled modules import too: only their own errors stop the build
        Path(tmp, "mypy.ini").write_text(_MYPY_SETTINGS, encoding="utf-8")
        os.chdir(tmp)
        try:
            paths = [str(Path(*module.split(".")).with_suffix(".py")) for module in MODULES]
            setup(
                name="bridge-hot-path",
                packages=[],
                py_modules=[],
                ext_modules=mypycify(paths, opt_level="3", group_name=GROUP),
                script_args=["build_ext", "--inplace", "--build-temp", str(Path(tmp, "build"))],
            )
        finally:
            os.chdir(here)
    (PACKAGE / STAMP).write_text(json.dumps(digests(dependencies()), indent=1) + "\n", encoding="utf-8")


def clean() -> None:
    """Remove every compiled module of the package (the bridge has no other native code: a module left by a
    build of another module list too), the group's shared library and the stamp: the bridge runs
    interpreted."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for path in PACKAGE.rglob(f"*{suffix}"):
            path.unlink()
    (PACKAGE / STAMP).unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["build"]:
        build()
    elif args == ["clean"]:
        clean()
    elif args != ["state"]:
        print("usage: python -m bridge.hot_path build | clean | state", file=sys.stderr)
        return 2
    print(f"hot path: {guard()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
