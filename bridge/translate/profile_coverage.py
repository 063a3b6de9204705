"""Coverage of the official ROR CSD v2.4 profile's elements by the mapping tables, for `mappings check`.

translate/: pure mapping engine. Given the element paths of the profile's `CSD` (walked from its schema by
bridge/csd/schema_tree.py) and those our own schema lets the writer produce, says for each official element
whether a mapping rule produces it, whether our `urn:ror:csd:extension` carries it under another form, or why
it is not produced (`mappings/profile-v24.yaml`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import MappingTableError
from bridge.translate.loaders.reading import read_yaml
from bridge.translate.tables import Mappings

PROFILE = "profile-v24.yaml"
_ENTITY_PATHS = {
    "organization": "organizationDirectory/organization",
    "service": "serviceDirectory/service",
    "facility": "facilityDirectory/facility",
    "provider": "providerDirectory/provider",
    "device": "deviceDirectory/device",
}


@dataclass(frozen=True, slots=True)
class ElementCoverage:
    path: str
    status: str  # "produced", "extension" (carried by our urn:ror:csd:extension), "not produced"
    detail: str  # rule ids, our extension type, or the reason (empty: none given)


def load_reasons(directory: Path) -> dict[str, str]:
    """`mappings/profile-v24.yaml`: `reasons`, official element path (a prefix) → why it is not produced."""
    if not (directory / PROFILE).is_file():
        return {}  # a deployment's own mappings directory may not have one: every gap is then unexplained
    data = read_yaml(directory, PROFILE)
    reasons = data.get("reasons") if isinstance(data, dict) else None
    if not isinstance(reasons, dict) or not reasons:
        raise MappingTableError(
            PROFILE, None, "reasons", "must be a non-empty mapping of element path → reason"
        )
    out: dict[str, str] = {}
    for path, reason in reasons.items():
        if not isinstance(path, str) or not isinstance(reason, str) or not reason.strip():
            raise MappingTableError(PROFILE, None, f"reasons.{path}", "each path needs a reason (text)")
        out[path.strip("/")] = " ".join(reason.split())
    return out


def _reason(path: str, reasons: Mapping[str, str]) -> str:
    # the longest path prefix (whole steps) that has a reason; `*` stands for one step
    steps = path.split("/")
    for size in range(len(steps), 0, -1):
        # of two keys of the same length, the one with fewer `*` steps is the more specific
        for key, reason in sorted(reasons.items(), key=lambda item: item[0].count("*")):
            pattern = key.split("/")
            if len(pattern) == size and all(
                p in ("*", s) for p, s in zip(pattern, steps[:size], strict=True)
            ):
                return reason
    return ""


def profile_coverage(
    mappings: Mappings,
    official: Sequence[str],
    ours: Collection[str],
    reasons: Mapping[str, str],
) -> list[ElementCoverage]:
    """One line per official element path (relative to `CSD`).

    Produced: a directory or entity the tables fill; an entity's child that is some rule's target; deeper, an
    element under a produced one that our own schema (xsd/csd.xsd, the writer's contract) also has at that
    path, unless it is (or is under) an `extension` or a `record` there (an approximation: what our schema
    allows there, not what the writer fills). Our extension: an official element under `extension` whose name
    is the `type` of one of our extension rules (same content, written in urn:ror:csd:extension). Everything
    else is not produced.
    """
    produced_paths: dict[str, str] = {}
    extension_types: dict[str, list[str]] = {}
    for kind, table in mappings.entities.items():  # by table name, as rules are referenced
        base = _ENTITY_PATHS[table.kind.name]
        directory = base.partition("/")[0]
        produced_paths.setdefault(directory, f"{table.kind.name} table")
        produced_paths[base] = ", ".join(filter(None, (produced_paths.get(base), table.table)))
        for rule in table.rules:
            target = rule.target.lstrip("@")
            if rule.target.startswith("@"):
                continue
            key = f"{base}/{target}"
            produced_paths[key] = ", ".join(filter(None, (produced_paths.get(key), f"{kind}#{rule.id}")))
            if rule.extension is not None and rule.extension.profile:
                # A typed element of the profile's own extension (bridge/profile.py): produced as such.
                typed = f"{base}/extension/{rule.extension.element}"
                filled = (produced_paths.get(typed), f"{kind}#{rule.id}")
                produced_paths[typed] = ", ".join(filter(None, filled))
            elif rule.extension is not None:
                extension_types.setdefault(f"{base}/extension/{rule.extension.type}", []).append(
                    f"{kind}#{rule.id}"
                )
    out = []
    for path in official:
        detail = produced_paths.get(path)
        if detail is not None:
            out.append(ElementCoverage(path, "produced", detail))
            continue
        parents = [p for p in produced_paths if path.startswith(p + "/")]
        deepest = max(parents, key=len, default=None)
        if path in extension_types:
            out.append(ElementCoverage(path, "extension", ", ".join(extension_types[path])))
        elif deepest is not None and deepest.count("/") >= 2 and path in ours and _plain(path):
            out.append(ElementCoverage(path, "produced", f"inside {deepest.rpartition('/')[2]}"))
        else:
            out.append(ElementCoverage(path, "not produced", _reason(path, reasons)))
    return out


def _plain(path: str) -> bool:
    # Below an entity's child, the writer writes the IHE content of the value (address lines, coordinates,
    # names…), never an `extension` or a `record` (only entities carry a record).
    steps = path.split("/")
    return "extension" not in steps[2:] and "record" not in steps[3:]


def coverage_lines(coverage: Sequence[ElementCoverage], schema: str) -> list[str]:
    counts = {s: sum(1 for c in coverage if c.status == s) for s in ("produced", "extension", "not produced")}
    unexplained = sum(1 for c in coverage if c.status == "not produced" and not c.detail)
    lines = [
        f"{PROFILE}: official ROR CSD v2.4 profile coverage ({schema}), {len(coverage)} elements under CSD: "
        f"{counts['produced']} produced, {counts['extension']} carried in urn:ror:csd:extension, "
        f"{counts['not produced']} not produced ({unexplained} without a reason)"
    ]
    marks = {"produced": "+", "extension": "~", "not produced": "-"}
    # An element not produced for the same reason as the element above it is counted under that one.
    shown: list[tuple[ElementCoverage, int]] = []
    for item in coverage:
        if shown:
            top, under = shown[-1]
            if (
                item.status == top.status == "not produced"
                and item.detail == top.detail
                and item.path.startswith(top.path + "/")
            ):
                shown[-1] = (top, under + 1)
                continue
        shown.append((item, 0))
    for item, under in shown:
        detail = item.detail or "NO REASON GIVEN"
        more = f" (and the {under} element(s) under it)" if under else ""
        lines.append(f"  {marks[item.status]} {item.path}{more}: {detail}")
    return lines
