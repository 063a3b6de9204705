"""A mapping worker process imports what maps and writes a batch only (issue 13 item 4): spawned, it imports
`bridge.pipeline.workers`, which must not bring the transaction's fhir/ client and httpx (with what httpx
imports: click, rich, pygments), about 10 MiB of each worker's memory; `bridge.pipeline.Pipeline` is still
there for whoever asks (imported on first use)."""

from __future__ import annotations

import subprocess
import sys

# What a worker never needs: the upstream client and the HTTP stack.
UNWANTED = ("httpx", "bridge.fhir.client", "bridge.pipeline.transaction")


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
