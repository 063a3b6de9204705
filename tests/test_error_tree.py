"""Every exception the bridge defines is in the bridge/errors.py tree (issue 12 item 2): no module declares
its own exception class, and every class of errors.py descends from BridgeError and is in its drawing."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import bridge
from bridge import errors


def _is_exception_base(node: ast.expr) -> bool:
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return name.endswith(("Error", "Exception")) or name in {"Exception", "BaseException"}


def test_no_module_declares_an_exception_outside_errors_py() -> None:
    root = Path(bridge.__file__).parent
    found = []
    for path in root.rglob("*.py"):
        if path.name == "errors.py" and path.parent == root:
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ClassDef) and any(_is_exception_base(base) for base in node.bases):
                found.append(f"{path.relative_to(root)}: {node.name}")
    assert found == []


def test_every_class_of_errors_py_is_a_bridge_error_drawn_in_the_tree() -> None:
    drawing = errors.__doc__ or ""
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert len(classes) > 20
    for cls in classes:
        assert issubclass(cls, errors.BridgeError), cls
        assert re.search(rf"^\s*(?:[│├└─ ]*)\b{cls.__name__}\b", drawing, re.MULTILINE), cls.__name__
