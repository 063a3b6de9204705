"""No two modules of the bridge share a file name with different meanings (issue 12 item 6): a newcomer finds
"the SOAP fault" in soap/faults.py, "the simulator's fault injection" in simulator/fault_injection.py, etc."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import bridge

# Every clash is renamed (compare/engine.py → compare/matching.py, compare/report.py →
# compare/report_files.py): a new one fails.
NOT_YET_RENAMED: dict[str, set[str]] = {}


def test_no_two_modules_share_a_file_name() -> None:
    root = Path(bridge.__file__).parent
    by_name: dict[str, set[str]] = defaultdict(set)
    for path in root.rglob("*.py"):
        if path.name != "__init__.py" and "_shipped" not in path.parts:
            by_name[path.name].add(path.relative_to(root).as_posix())
    clashes = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert clashes == NOT_YET_RENAMED


def test_the_five_names_of_the_issue_mean_one_thing_each() -> None:
    root = Path(bridge.__file__).parent
    for name in ("app.py", "codes.py", "export.py", "faults.py", "paths.py"):
        assert len([p for p in root.rglob(name) if "_shipped" not in p.parts]) == 1, name
