"""A production install (no `demo` / `validation` extras) serves the national API; the demo says what it
lacks (issue 16 item 8). A fresh interpreter with numpy and fhir.resources hidden stands for that install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.test_cli import REPO

HIDE = """
import sys
sys.modules["numpy"] = None  # an import of numpy now fails as if it were not installed
sys.modules["fhir.resources"] = None
"""


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HIDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_serve_against_a_real_upstream_needs_neither_numpy_nor_fhir_resources() -> None:
    result = _python(
        """
        from bridge.app import create_app
        from bridge.config import load_settings
        app = create_app(load_settings(upstream_url="http://127.0.0.1:9/ws-diffusion-fhir"))
        print("built", "numpy" in sys.modules and sys.modules["numpy"] is not None)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "built False"


def test_the_demo_upstream_without_the_demo_extra_says_what_to_install() -> None:
    result = _python(
        """
        from bridge.cli import main
        sys.exit(main(["serve", "--port", "1"]))
        """
    )
    assert result.returncode == 2
    assert "install the `demo` extra" in result.stderr
    assert "numpy" in result.stderr


def test_validation_without_its_extra_is_refused_at_start_up() -> None:
    result = _python(
        """
        from bridge.app import create_app
        from bridge.config import load_settings
        from bridge.errors import ConfigurationError
        try:
            create_app(load_settings(upstream_url="http://127.0.0.1:9/fhir", upstream_validation_rate=0.5))
        except ConfigurationError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "BRIDGE_UPSTREAM_VALIDATION_RATE > 0 needs fhir.resources" in result.stdout


def test_offline_commands_need_neither_extra() -> None:
    result = _python(
        """
        from bridge.cli import main
        sys.exit(main(["mappings", "check"]))
        """
    )
    assert result.returncode == 0, result.stderr
