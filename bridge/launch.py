"""The `ror-bridge` console script's entry point: imports the command line only when it runs. Leaf module.

A mapping worker is a fresh interpreter that first re-imports the script its parent was started from
(multiprocessing's `spawn`): from this module it imports nothing, so it never loads the settings' pydantic
models and the command line it does not run (~12 MiB less per worker, issue 13 item 4).
"""

from __future__ import annotations


def main() -> int:
    """`ror-bridge`: bridge/cli.py's `main`."""
    from bridge.cli import main as run  # imported here: the point of this module

    return run()
