"""A Schematron interpreter for ANS's PLATINES rules (queryBinding xslt2), on elementpath's XPath 3.0.

Part of the official-profile conformance harness. Why not an engine from PyPI: `lxml.isoschematron` compiles
to XSLT 1.0 / XPath 1.0, and ANS's rules need XPath 2.0 (`*:name` wildcards, `if … then … else`, `exists()`,
`distinct-values()`, general comparisons over `doc()` sequences); `pyschematron` (elementpath-based) requires
Python ≥ 3.12 where the project supports 3.11; Saxon (saxonche) has no Schematron compiler of its own. So this
module applies the ISO Schematron semantics the XSLT skeletons implement, evaluating every expression with
elementpath (already pinned in constraints.txt), with its XPath 3.0 parser (a superset of the XPath 2.0 of
xslt2 that also has `format-number()`, an XSLT 2.0 function one rule uses):

- patterns run independently; within a pattern a node is handled by the FIRST rule whose context matches it
  (the skeletons' template priorities), later rules never see it;
- a rule context is an XSLT match pattern: a relative one (`foo/bar`) matches at any depth, as `//foo/bar`;
- `sch:let` at schema and pattern level is evaluated once on the document node, at rule level per context
  node, in document order; a `let` that cannot be evaluated (e.g. `doc()` of a table the NOS files of
  2023-06-14 do not have) fails only the assertions that use it, with the evaluation error as their message;
- `current()` (XSLT) is the rule's context node;
- `doc('X.xml')` resolves to the NOS table with X's key (see `nos.NosFiles.find`), rendered as SVS;
- an `assert` fails when its test's effective boolean value is false, a `report` when it is true;
- messages are the element's text with each `sch:value-of` evaluated (space-joined), whitespace collapsed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import elementpath
from elementpath import XPathContext
from elementpath.xpath30 import XPath30Parser
from elementpath.xpath_nodes import XPathNode
from lxml import etree

SCH = "http://purl.oclc.org/dsdl/schematron"
_CURRENT = re.compile(r"\bcurrent\(\)")
_DOC = re.compile(r"""\bdoc\(\s*['"]([^'"]*)['"]\s*\)""")
_VARIABLE = re.compile(r"\$([A-Za-z_][\w.\-]*)")
_FREE_PATH = re.compile(
    r"""^\s*(doc\(\s*'[^']*'\s*\)|\$[A-Za-z_][\w.\-]*)(\s*//?\s*[\w:*@.\-]+(\[[^\[\]]*\])*)*\s*$"""
)
# A path from the document's root (`/…` or `//…`), its predicates free of current() and variables, alone or
# compared with a string literal: its value is the same for every node of one document (an assert such as
# `//*:otherID/@assigningAuthorityName='1.2.250.1.71.4.2.2'`, which walked the whole answer once per context
# node: 60 of the 83 s of the largest answer test), so `validate` computes it once per document.
_DOCUMENT_PATH = re.compile(
    r"""^\s*//?\s*[\w:*@.\-]+(\[[^\[\]$]*\])*(\s*//?\s*[\w:*@.\-]+(\[[^\[\]$]*\])*)*"""
    r"""(\s*!?=\s*'[^']*')?\s*$"""
)


@dataclass(frozen=True)
class SchematronFailure:
    file: str  # the .sch file name
    pattern: str  # pattern @id (or its position)
    rule: str  # the rule's context expression
    kind: str  # "assert" or "report"
    test: str  # the test expression
    path: str  # the failing node's path (local names, 1-based positions)
    message: str


@dataclass
class _Let:
    name: str
    value: str


@dataclass
class _Check:
    kind: str
    test: str
    message: etree._Element


@dataclass
class _Rule:
    context: str
    lets: list[_Let] = field(default_factory=list)
    checks: list[_Check] = field(default_factory=list)


@dataclass
class _Pattern:
    id: str
    lets: list[_Let] = field(default_factory=list)
    rules: list[_Rule] = field(default_factory=list)


class _LetError(Exception):
    """A variable whose `sch:let` could not be evaluated (held instead of its value)."""


def node_path(node: Any) -> str:
    """`/CSD/facilityDirectory/facility[3]/extension[1]`: the path of an element or attribute node."""
    element = getattr(node, "elem", node)
    if isinstance(node, XPathNode) and getattr(node, "name", None) and not hasattr(node, "elem"):
        parent = node.parent
        base = node_path(parent) if parent is not None else ""
        return f"{base}/@{etree.QName(str(node.name)).localname}"
    if not isinstance(element, etree._Element):
        return "/"
    steps = []
    current: etree._Element | None = element
    while current is not None:
        name = etree.QName(current).localname
        above = current.getparent()
        if above is None:
            steps.append(name)
        else:
            same = [child for child in above if child.tag == current.tag]
            steps.append(f"{name}[{same.index(current) + 1}]")
        current = above
    return "/" + "/".join(reversed(steps))


def _match_expression(context: str) -> str:
    # An XSLT match pattern (possibly a union) as an expression selecting the same nodes from the root.
    parts = [part.strip() for part in _split_union(context)]
    return " | ".join(part if part.startswith("/") else f"//{part}" for part in parts)


def _split_union(expression: str) -> list[str]:
    parts, depth, quote, start = [], 0, "", 0
    for index, char in enumerate(expression):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(expression[start:index])
            start = index + 1
    parts.append(expression[start:])
    return parts


class Schematron:
    """One .sch file, parsed once; `validate(document)` lists its failures on that document."""

    def __init__(
        self,
        path: Path,
        resolve_doc: Callable[[str], etree._ElementTree | None],
        *,
        correct: Callable[[str], str] | None = None,
        excluded: Iterable[tuple[str, str]] = (),
    ) -> None:
        """`correct` rewrites rule contexts (see the harness's CORRECTED_FILES); `excluded` drops (pattern id,
        context) rules before evaluation, so that they neither run nor shadow the rules after them."""
        excluded = set(excluded)
        self.path = path
        self.file = path.name
        self.corrected: list[tuple[str, str]] = []
        self._resolve_doc = resolve_doc
        tree = etree.parse(str(path))
        root = tree.getroot()
        if root.tag != f"{{{SCH}}}schema":
            raise ValueError(f"{path.name}: not an ISO Schematron schema")
        self.query_binding = root.get("queryBinding", "xslt")
        self.namespaces = {ns.get("prefix", ""): ns.get("uri", "") for ns in root.iterfind(f"{{{SCH}}}ns")}
        self.lets = [self._let(let) for let in root.iterfind(f"{{{SCH}}}let")]
        self.patterns: list[_Pattern] = []
        for position, pattern in enumerate(root.iterfind(f"{{{SCH}}}pattern"), start=1):
            parsed = _Pattern(id=pattern.get("id") or f"pattern[{position}]")
            for child in pattern:
                if child.tag == f"{{{SCH}}}let":
                    parsed.lets.append(self._let(child))
                elif child.tag == f"{{{SCH}}}rule":
                    if child.get("abstract") == "true" or child.find(f"{{{SCH}}}extends") is not None:
                        raise ValueError(f"{path.name}: abstract rules are not supported")
                    context = child.get("context", "")
                    if (parsed.id, context) in excluded:
                        continue
                    rule = _Rule(context=correct(context) if correct else context)
                    if rule.context != context:
                        self.corrected.append((context, rule.context))
                    for item in child:
                        if item.tag == f"{{{SCH}}}let":
                            rule.lets.append(self._let(item))
                        elif item.tag in (f"{{{SCH}}}assert", f"{{{SCH}}}report"):
                            kind = etree.QName(item).localname
                            rule.checks.append(_Check(kind=kind, test=item.get("test", ""), message=item))
                    parsed.rules.append(rule)
            self.patterns.append(parsed)
        self._parser = XPath30Parser(namespaces=self.namespaces)
        self._compiled: dict[str, Any] = {}
        self._doc_trees: dict[str, Any] = {}
        self._let_cache: dict[int, Any] = {}
        # check test → its value for the document being validated (`_DOCUMENT_PATH`), emptied per document
        self._document_values: dict[str, Any] = {}

    @staticmethod
    def _let(element: etree._Element) -> _Let:
        return _Let(name=element.get("name", ""), value=element.get("value", ""))

    def _compile(self, expression: str) -> Any:
        compiled = self._compiled.get(expression)
        if compiled is None:
            compiled = self._parser.parse(_CURRENT.sub("$sch-current", expression))
            self._compiled[expression] = compiled
        return compiled

    def _documents(self, expressions: Iterable[str]) -> dict[str, Any]:
        documents: dict[str, Any] = {}
        for expression in expressions:
            for name in _DOC.findall(expression):
                if name not in self._doc_trees:
                    found = self._resolve_doc(name)
                    self._doc_trees[name] = None if found is None else elementpath.get_node_tree(found)
                if self._doc_trees[name] is not None:
                    documents[name] = self._doc_trees[name]
        return documents

    def _evaluate(self, expression: str, root: Any, item: Any, variables: dict[str, Any]) -> Any:
        values = {}
        for name in _VARIABLE.findall(_CURRENT.sub("$sch-current", expression)):
            value = variables.get(name)
            if isinstance(value, _LetError):
                raise value
            values[name] = value
        context = XPathContext(root, item=item, variables=values, documents=self._documents([expression]))
        return self._compile(expression).evaluate(context)

    def _bind(self, lets: list[_Let], root: Any, item: Any, variables: dict[str, Any]) -> dict[str, Any]:
        bound = dict(variables)
        free: set[str] = set()
        for let in lets:
            if id(let) in self._let_cache:
                bound[let.name] = self._let_cache[id(let)]
                free.add(let.name)
                continue
            try:
                bound[let.name] = self._evaluate(let.value, root, item, bound)
            except (elementpath.ElementPathError, _LetError, ValueError, TypeError) as error:
                bound[let.name] = _LetError(f"sch:let ${let.name} = {let.value.strip()}: {error}")
            if _context_free(let.value, free):
                self._let_cache[id(let)] = bound[let.name]
                free.add(let.name)
            else:
                free.discard(let.name)
        return bound

    def _message(self, message: etree._Element, root: Any, item: Any, variables: dict[str, Any]) -> str:
        parts = [message.text or ""]
        for child in message:
            if child.tag == f"{{{SCH}}}value-of":
                try:
                    value = self._evaluate(child.get("select", ""), root, item, variables)
                    parts.append(" ".join(_strings(value)))
                except (elementpath.ElementPathError, _LetError, ValueError, TypeError) as error:
                    parts.append(f"[{error}]")
            elif child.tag == f"{{{SCH}}}name":
                parts.append(etree.QName(getattr(item, "elem", None) or "unknown").localname)
            parts.append(child.tail or "")
        return " ".join("".join(parts).split())

    def validate(self, document: etree._Element | etree._ElementTree) -> list[SchematronFailure]:
        tree = document if isinstance(document, etree._ElementTree) else document.getroottree()
        root = elementpath.get_node_tree(tree)
        self._document_values = {}
        failures = []
        schema_vars = self._bind(self.lets, root, root, {})
        for pattern in self.patterns:
            variables = self._bind(pattern.lets, root, root, schema_vars)
            fired: set[int] = set()
            for rule in pattern.rules:
                try:
                    nodes = self._contexts(rule.context, root, variables)
                except (elementpath.ElementPathError, _LetError, ValueError, TypeError) as error:
                    failures.append(
                        SchematronFailure(
                            self.file,
                            pattern.id,
                            rule.context,
                            "rule",
                            rule.context,
                            "/",
                            f"context fails: {error}",
                        )
                    )
                    continue
                for node in nodes:
                    if id(node) in fired:
                        continue
                    fired.add(id(node))
                    failures.extend(self._check(pattern, rule, root, node, variables))
        return failures

    def _document_value(self, test: str, root: Any, node: Any, variables: dict[str, Any]) -> Any:
        """A check's value at `node`; a test whose value is the document's (`_DOCUMENT_PATH`) computed once
        per document (an error is not kept: each node reports it, as before)."""
        if "current()" in test or _DOCUMENT_PATH.match(test) is None:
            return self._evaluate(test, root, node, variables)
        if test not in self._document_values:
            self._document_values[test] = self._evaluate(test, root, node, variables)
        return self._document_values[test]

    def _contexts(self, context: str, root: Any, variables: dict[str, Any]) -> list[Any]:
        found = self._evaluate(_match_expression(context), root, root, variables)
        return found if isinstance(found, list) else [found]

    def _check(
        self, pattern: _Pattern, rule: _Rule, root: Any, node: Any, variables: dict[str, Any]
    ) -> Iterator[SchematronFailure]:
        bound = self._bind(rule.lets, root, node, {**variables, "sch-current": node})
        for check in rule.checks:
            try:
                value = self._document_value(check.test, root, node, bound)
                outcome = _boolean(value)
            except (elementpath.ElementPathError, _LetError, ValueError, TypeError) as error:
                yield SchematronFailure(
                    self.file,
                    pattern.id,
                    rule.context,
                    check.kind,
                    check.test,
                    node_path(node),
                    f"cannot be evaluated: {error}",
                )
                continue
            if (check.kind == "assert" and not outcome) or (check.kind == "report" and outcome):
                yield SchematronFailure(
                    self.file,
                    pattern.id,
                    rule.context,
                    check.kind,
                    check.test,
                    node_path(node),
                    self._message(check.message, root, node, bound),
                )


def _context_free(expression: str, free: set[str]) -> bool:
    # A path from doc() or from a context-free variable, with predicates that never use current(): its value
    # is the same for every node and every document (a NOS table), so it is computed once.
    if _FREE_PATH.match(expression) is None or "current()" in expression:
        return False
    return all(name in free for name in _VARIABLE.findall(expression))


def _strings(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, XPathNode):
            out.append(str(item.string_value))
        elif item is not None:
            out.append(str(item))
    return out


def _boolean(value: Any) -> bool:
    # XPath effective boolean value.
    if isinstance(value, list):
        if not value:
            return False
        if isinstance(value[0], XPathNode):
            return True
        if len(value) == 1:
            return _boolean(value[0])
        raise TypeError(f"effective boolean value of a sequence of {len(value)} atomic values")
    if isinstance(value, XPathNode):
        return True
    if isinstance(value, str):
        return value != ""
    if isinstance(value, float) and value != value:
        return False
    return bool(value)
