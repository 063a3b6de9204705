"""Where the shipped data directories (`mappings/`, `xsd/`) are, in a source checkout or an installed wheel.

Leaf module. The wheel carries them under `bridge/_shipped/` (pyproject `force-include`); a source
checkout (and an editable install) reads them from the repository's top level.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """The shipped directory `name` (`mappings` or `xsd`)."""
    for candidate in (_PACKAGE / "_shipped" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"shipped directory {name!r} not found next to the bridge package")
