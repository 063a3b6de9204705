"""A mapping worker process imports what maps and writes a batch only (issue 13 item 4): spawned, it imports
`bridge.pipeline.workers`, which must not bring the transaction's fhir/ client and httpx (with what httpx
imports: click, rich, pygments), about 10 MiB of each worker's memory; `bridge.pipeline.Pipeline` is still
there for whoever asks (imported on first use). Nor, through the `ror-bridge` script it re-imports, the
command line and its settings models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bridge.shipped import shipped_dir

# What a worker never needs: the upstream client and the HTTP stack, nor asyncio (and the ssl it imports,
# ~10 MiB: the spool's and the writer's coroutines import it when they run).
UNWANTED = ("httpx", "bridge.fhir.client", "bridge.pipeline.transaction", "asyncio", "ssl")


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return set(done.stdout.split())


def test_the_mapping_worker_module_imports_no_http_client() -> None:
    modules = _modules_after("import bridge.pipeline.workers")
    assert "bridge.translate.engine" in modules, "the worker's own imports are there: the check is real"
    assert not modules & set(UNWANTED), sorted(modules & set(UNWANTED))


def test_the_pipeline_is_still_imported_on_first_use() -> None:
    modules = _modules_after("from bridge.pipeline import Pipeline; assert Pipeline.__name__ == 'Pipeline'")
    assert set(UNWANTED) <= modules


def test_an_unknown_name_of_the_package_is_an_attribute_error() -> None:
    code = "import bridge.pipeline as p\ntry:\n    p.Nothing\nexcept AttributeError as e:\n    print(e)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "has no attribute 'Nothing'" in done.stdout


# The shape of the `ror-bridge` script pip generates from pyproject's [project.scripts]: a spawned mapping
# worker re-imports its parent's main script (as `__mp_main__`) before anything else, so what that script
# imports at its top is loaded in every worker. Its `__main__` part here asks a real worker what it imported.
SCRIPT = """import sys
{entry}

if __name__ == "__main__":
    from pathlib import Path
    from bridge.pipeline.workers import start_pool
    from bridge.translate import load_mappings
    pool = start_pool(1, load_mappings(Path(sys.argv[1])))
    try:
        print("\\n".join(pool.submit(eval, "list(__import__('sys').modules)").result(timeout=120)))
    finally:
        pool.shutdown()
"""


def _worker_modules(tmp_path: Path, entry: str) -> set[str]:
    script = tmp_path / "ror-bridge-like"
    script.write_text(SCRIPT.format(entry=entry))
    done = subprocess.run(
        [sys.executable, str(script), str(shipped_dir("mappings"))],
        capture_output=True,
        text=True,
        check=True,
        timeout=180,
    )
    return set(done.stdout.split())


def test_a_worker_of_the_console_script_loads_no_settings_models(tmp_path: Path) -> None:
    """The console script's entry (bridge/launch.py) imports the command line only when it runs: a worker
    spawned by `ror-bridge serve` does not load pydantic (~12 MiB each, issue 13 item 4)."""
    installed = Path(sys.executable).parent / "ror-bridge"
    assert "from bridge.launch import main" in installed.read_text(), "pyproject's entry point is installed"
    modules = _worker_modules(tmp_path, "from bridge.launch import main")
    assert "bridge.translate.engine" in modules, "the worker answered: the check is real"
    loaded = modules & {"pydantic", "bridge.config", "bridge.cli", "asyncio", "ssl"}
    assert not loaded, sorted(loaded)


def test_a_script_importing_the_command_line_would_load_them_in_every_worker(tmp_path: Path) -> None:
    """The control: with the command line imported at the script's top (the former entry point), the
    worker loads pydantic, the settings and the CLI — what the test above shows it no longer does."""
    modules = _worker_modules(tmp_path, "from bridge.cli import main")
    assert {"pydantic", "bridge.config", "bridge.cli"} <= modules
