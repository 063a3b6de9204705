"""The optional compiled hot path (bridge/hot_path.py): what the import guard decides for each state of a
build, and a real mypyc build of a copy of the bridge writing the same bytes as the interpreted modules."""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge import hot_path

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package directory holding the hot path's module sources, the guard pointed at it, its finder and
    state given back afterwards."""
    package = tmp_path / "bridge"
    for module in hot_path.MODULES:
        source = tmp_path.joinpath(*module.split(".")).with_suffix(".py")
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(f"NAME = {module!r}\n", encoding="utf-8")
    # a module they import, whose declarations a build bakes in
    (package / "model.py").write_text("LIMIT = 3\n", encoding="utf-8")
    writer = package / "csd" / "writer.py"
    source = writer.read_text(encoding="utf-8")
    writer.write_text(f"{source}from bridge.model import LIMIT\n", encoding="utf-8")
    monkeypatch.setattr(hot_path, "PACKAGE", package)
    monkeypatch.delenv(hot_path.SWITCH, raising=False)
    finders = list(sys.meta_path)
    yield package
    monkeypatch.undo()
    sys.meta_path[:] = finders
    hot_path.guard()  # the real package's state again


def build_in(package: Path, *, stamp: bool = True, skip: str = "") -> None:
    """Stand-in compiled files (never imported here) and, with `stamp`, the digests of the current sources."""
    for module in hot_path.MODULES:
        if module != skip:
            source = package.parent.joinpath(*module.split(".")).with_suffix(".py")
            source.with_name(source.stem + SUFFIX).write_bytes(b"")
    if stamp:
        stamp = hot_path.digests(hot_path.dependencies())
        (package / hot_path.STAMP).write_text(json.dumps(stamp), encoding="utf-8")


def sources_finder() -> list[object]:
    return [f for f in sys.meta_path if isinstance(f, hot_path._Sources)]


def test_without_a_build_the_modules_run_interpreted_and_nothing_is_hooked(tree: Path) -> None:
    assert hot_path.guard() == "interpreted (not built: make compiled)"
    assert sources_finder() == []


def test_a_build_matching_its_sources_is_loaded(tree: Path) -> None:
    build_in(tree)
    assert hot_path.guard() == "compiled"
    assert sources_finder() == []


def test_a_source_edited_after_the_build_makes_every_module_load_from_its_source(tree: Path) -> None:
    build_in(tree)
    edited = tree / "translate" / "transforms.py"
    edited.write_text(edited.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    state = hot_path.guard()
    assert state == "interpreted (stale build: bridge.translate.transforms changed since; make compiled)"
    (finder,) = sources_finder()
    # all or nothing: the group's modules call each other natively
    for module in hot_path.MODULES:
        spec = finder.find_spec(module, None)  # type: ignore[attr-defined]
        assert spec is not None
        assert spec.origin == str(tree.parent.joinpath(*module.split(".")).with_suffix(".py"))
    assert finder.find_spec("bridge.model", None) is None  # type: ignore[attr-defined]
    # guarding again (a later import) leaves one finder, and a fresh build removes it
    hot_path.guard()
    assert len(sources_finder()) == 1
    build_in(tree)
    assert hot_path.guard() == "compiled"
    assert sources_finder() == []


def test_a_module_the_compiled_ones_import_edited_after_the_build_makes_them_load_from_source(
    tree: Path,
) -> None:
    assert hot_path.dependencies() == sorted([*hot_path.MODULES, "bridge.model"])
    build_in(tree)
    (tree / "model.py").write_text("LIMIT = 4\n", encoding="utf-8")
    assert hot_path.guard() == "interpreted (stale build: bridge.model changed since; make compiled)"
    assert len(sources_finder()) == 1
    (tree / "model.py").unlink()
    assert hot_path.guard() == "interpreted (stale build: bridge.model changed since; make compiled)"


def test_a_build_without_its_stamp_is_not_trusted(tree: Path) -> None:
    build_in(tree, stamp=False)
    assert hot_path.guard().startswith("interpreted (stale build: bridge.translate.compiled, ")
    assert len(sources_finder()) == 1


def test_an_incomplete_build_is_not_loaded(tree: Path) -> None:
    build_in(tree, skip="bridge.csd.writer")
    assert hot_path.guard() == "interpreted (incomplete build: bridge.csd.writer not compiled)"
    assert len(sources_finder()) == 1


def test_the_setting_interpreted_ignores_a_current_build(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_in(tree)
    monkeypatch.setenv(hot_path.SWITCH, "interpreted")
    assert hot_path.guard() == "interpreted (BRIDGE_HOT_PATH=interpreted)"
    assert len(sources_finder()) == 1


def test_clean_removes_the_build_and_its_stamp(tree: Path) -> None:
    build_in(tree)
    shared = tree / f"hot_path_native__mypyc{SUFFIX}"
    shared.write_bytes(b"")
    hot_path.clean()
    assert not shared.exists()
    assert not (tree / hot_path.STAMP).exists()
    assert sorted(p.name for p in tree.rglob(f"*{SUFFIX}")) == []
    assert hot_path.guard() == "interpreted (not built: make compiled)"


# --------------------------------------------------------------------------------------------------
# A real build (a C compiler needed)

TRANSLATE = """
import sys
import bridge
from bridge import hot_path
from bridge.app import translate_bundle
from bridge.config import load_settings
import bridge.csd.writer, bridge.translate.compiled, bridge.translate.engine, bridge.translate.transforms
files = [sys.modules[m].__file__ for m in hot_path.MODULES]
out = translate_bundle(load_settings(), open(sys.argv[1], "rb").read()).document
open(sys.argv[2], "wb").write(out)
print(hot_path.STATE)
print("\\n".join(files))
"""


def _run(copy: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    environment = {k: v for k, v in os.environ.items() if k != hot_path.SWITCH}
    environment.update({"PYTHONPATH": str(copy), **(env or {})})
    done = subprocess.run(
        [sys.executable, *args], cwd=copy, env=environment, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow  # a minute, most of it the build: `make test-slow` (the default run stays under 10 minutes)
def test_a_real_build_writes_the_same_bytes_as_the_interpreted_modules(tmp_path: Path) -> None:
    """mypyc compiles a copy of the bridge; a 300-offer offre complète translated by the compiled modules and
    by the interpreted ones (the setting, then a stale build) gives the same document, byte for byte; the
    benchmark of `make bench` (part `compiled`) runs on such a copy."""
    from tests.bench.bench_compiled import c_compiler, compiled_copy, translation_figures
    from tests.bench.bench_translate import offre_complete

    if c_compiler() is None:
        pytest.skip("no C compiler on this machine: `make compiled` cannot build the hot path here")

    copy = compiled_copy(tmp_path / "tree")
    bundle = tmp_path / "offre.json"
    bundle.write_bytes(offre_complete(300, 3))
    script = tmp_path / "translate.py"
    script.write_text(TRANSLATE, encoding="utf-8")

    def translate(name: str, env: dict[str, str] | None = None) -> tuple[list[str], bytes]:
        lines = _run(copy, str(script), str(bundle), str(tmp_path / name), env=env).splitlines()
        return lines, (tmp_path / name).read_bytes()

    compiled, compiled_bytes = translate("compiled.xml")
    assert compiled[0] == "compiled"
    assert all(f.endswith(SUFFIX) for f in compiled[1:]), compiled
    interpreted, interpreted_bytes = translate("interpreted.xml", {hot_path.SWITCH: "interpreted"})
    assert interpreted[0] == "interpreted (BRIDGE_HOT_PATH=interpreted)"
    assert all(f.endswith(".py") for f in interpreted[1:]), interpreted
    assert compiled_bytes == interpreted_bytes
    assert compiled_bytes.count(b"<csd:facility ") > 300  # a whole document, not an empty one

    engine = copy / "bridge" / "translate" / "engine.py"
    engine.write_text(engine.read_text(encoding="utf-8") + "# edited after the build\n", encoding="utf-8")
    stale, stale_bytes = translate("stale.xml")
    assert stale[0].startswith("interpreted (stale build: bridge.translate.engine changed since")
    assert all(f.endswith(".py") for f in stale[1:]), stale
    assert stale_bytes == compiled_bytes

    engine.write_text(engine.read_text(encoding="utf-8").removesuffix("# edited after the build\n"), "utf-8")
    rows = translation_figures(copy, 20, 1, 1)  # checks that both variants write the same document
    assert [row.unit for row in rows] == ["", "×"]
    assert all(row.value > 0 for row in rows)

    # The golden cases (byte for byte, official schemas when ../shared is there) and the tests that hold what
    # compiling could change — no garbage cycle per answer, the transforms' docstrings — on the compiled copy.
    skip = shutil.ignore_patterns("__pycache__", "node_modules", ".hypothesis")
    shutil.copytree(ROOT / "tests", copy / "tests", ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", copy)
    if (ROOT.parent / "shared").is_dir():
        (copy.parent / "shared").symlink_to(ROOT.parent / "shared", target_is_directory=True)
    state = _run(copy, "-c", "import bridge, bridge.translate.engine; print(bridge._hot_path.STATE)", env={})
    assert state.strip() == "compiled"
    tests = [
        "tests/golden/test_golden.py",
        "tests/translate/test_engine.py::test_an_answer_leaves_no_cycle_for_the_collector",
        "tests/translate/test_transform_list.py",
    ]
    ran = _run(copy, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests, env={hot_path.SWITCH: "auto"})
    assert " passed" in ran.splitlines()[-1], ran[-3000:]  # (a failure fails `_run`)
