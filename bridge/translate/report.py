"""Human-readable coverage of the loaded mapping tables, for `ror-bridge mappings check`.

translate/: pure mapping engine. Lists every table, its rules and CSD targets, the transforms, the code
systems with and without OID, and what the engine has reported since start-up (codes without OID, unresolved
references).
"""

from __future__ import annotations

import ast
import re
import sys
from functools import lru_cache
from pathlib import Path

from bridge import profile
from bridge.model import Directory
from bridge.translate.access_profiles import TABLE as ACCESS_TABLE
from bridge.translate.delta import feed_directories
from bridge.translate.feeds import back_params, describe
from bridge.translate.findings import Finding
from bridge.translate.tables import FUNCTIONS, IDENTITIES, MODEL, REGIONS, SYSTEMS, Mappings
from bridge.translate.transforms import TEXT, TRANSFORMS, Transform

# The end of a docstring's first sentence: a full stop before a capital ("e.g. the" is not one).
_SENTENCE_END = re.compile(r"\.\s+(?=[A-Z`(\[])")


def coverage_report(mappings: Mappings) -> str:
    lines = [f"Mapping tables in {mappings.directory}", ""]

    lines.append(f"{FUNCTIONS}: {len(mappings.functions)} stored function(s)")
    specs = sorted(mappings.functions.values(), key=lambda s: s.urn)
    if mappings.modifications is not None:
        specs.append(mappings.modifications)
    for spec in specs:
        label = "ITI-74 getModificationsRequest" if spec is mappings.modifications else spec.urn
        lines.append(f"  {label}  [{spec.name}]")
        for alias in spec.aliases:
            lines.append(f"    alias {alias}")
        lines.append(f"    parameters: {', '.join(spec.parameters)}")
        lines.append(f"    fills: {', '.join(sorted(d.value for d in spec.directories))}")
        if spec.delta is not None:
            lines.append(f"    delta: {spec.delta} (what changed, each once)")
        directories = feed_directories(spec.delta, spec.directories) if spec.delta is not None else None
        for query in spec.queries:
            pairs = list(query.params)
            if directories is not None:  # the includes derived from the entity tables (translate/feeds.py)
                pairs += [p for p in back_params(mappings, directories, query.resource) if p not in pairs]
            params = "&".join(f"{name}={value}" for name, value in pairs)
            lines.append(f"    GET {query.resource}?{params}")
        if spec.delta is not None:
            lines.append("    then each entity to write by _id with what its record reads (feeds)")
    defaults = ", ".join(f"{e.value}={str(v).lower()}" for e, v in mappings.encapsulated_defaults.items())
    lines.append(
        f"  defaults: encapsulated when absent: {defaults}; request time zone {mappings.timezone.key}"
    )
    lines.append("")

    lines.append("feeds: what each record reads besides its own resource (change sets, translate/feeds.py)")
    lines += [f"  {line}" for line in describe(mappings, Directory)]
    lines.append("")

    lines.append(f"{IDENTITIES}: entityID schemes")
    for scheme in mappings.identities.schemes.values():
        lines.append(f"  {scheme.prefix}<value>  [{scheme.name}] systems: {', '.join(scheme.systems)}")
    for resource_type, names in mappings.identities.order.items():
        fallback = f"{mappings.identities.fallback_prefix}{resource_type}/<id>"
        lines.append(f"  {resource_type}: {' > '.join(names)} > {fallback}")
    lines.append("")

    lines.extend(access_report(mappings))
    lines.append(f"{REGIONS}: {len(mappings.regions)} legacy regional endpoint(s), scoped by _tag on")
    lines.append(f"  {mappings.region_tag_system}")
    for region in mappings.regions.values():
        lines.append(
            f"  /csd/{region.code}  {region.name}: {' '.join(region.region_codes)} ({region.confidence})"
        )
    lines.append("")

    for table in mappings.entities.values():
        lines.append(
            f"{table.table}: csd:{table.kind.name} from {table.resource}"
            f"{f' ({table.select})' if table.select else ''}, {len(table.rules)} rule(s)"
        )
        for rule in table.rules:
            source = str(rule.source) if rule.source is not None else "(whole resource)"
            extra = f" codes={rule.codes.name}" if rule.codes else ""
            if rule.extension and rule.extension.profile:
                extra += f" extension {rule.extension.type}/{rule.extension.element} (v2.4 profile)"
            elif rule.extension:
                extra += f" extension type={rule.extension.type} urn={rule.extension.urn}"
            if rule.fallback:
                extra += " (fallback)"
            lines.append(f"  {rule.id}: {rule.target} <- {source} via {rule.transform.name}{extra}")
        mapped = {r.target for r in table.rules}
        unmapped = [t for t in table.kind.targets if t not in mapped]
        lines.append(f"  CSD targets mapped: {', '.join(t for t in table.kind.targets if t in mapped)}")
        lines.append(f"  CSD targets not mapped: {', '.join(unmapped) or 'none'}")
    lines.append("")

    lines.extend(transform_list())
    lines.append("")

    lines.extend(model_coverage(mappings))
    lines.append("")

    lines.extend(profile_coverage(mappings))
    lines.append("")

    rows = list(mappings.systems.by_url.values())
    with_oid = [r for r in rows if r.oid]
    without = [r for r in rows if not r.oid]
    lines.append(f"{SYSTEMS}: {len(with_oid)} system(s) with OID, {len(without)} without")
    for row in with_oid:
        lines.append(f"  OID {row.oid}  {row.name} ({row.kind}, {row.confidence})  {row.system}")
    for row in without:
        lines.append(f"  no OID  {row.name} ({row.kind})  {row.system}")
    for name, codes in sorted(mappings.code_tables.items()):
        lines.append(f"codes/{name}.csv: {len(codes.entries)} code(s)")
    lines.append("")

    counts = mappings.findings.counts()
    lines.append(f"Reported since start-up: {sum(counts.values())}")
    for finding in Finding:
        for (kind, detail), count in sorted(counts.items()):
            if kind is finding:
                lines.append(f"  {count:>6}  {finding.value}: {detail}")
    return "\n".join(lines) + "\n"


def model_coverage(mappings: Mappings) -> list[str]:
    """The ME 2.4 coverage (model-v24.yaml): every class and attribute, the CSD place of each mapped one
    (entity, then the rule's target or extension type), the reason for each one not mapped."""
    tables = mappings.entities  # by table name, as model-v24.yaml references them
    attributes = [a for c in mappings.model for a in c.attributes]
    mapped = sum(1 for a in attributes if a.rules)
    lines = [
        f"{MODEL}: ME 2.4 coverage, {len(mappings.model)} classes, {len(attributes)} attributes: "
        f"{mapped} mapped, {len(attributes) - mapped} not mapped"
    ]
    for model_class in mappings.model:
        lines.append(f"  {model_class.name}  [{model_class.fhir}]")
        for attribute in model_class.attributes:
            if attribute.unmapped is not None:
                lines.append(f"    - {attribute.name}: NOT MAPPED: {' '.join(attribute.unmapped.split())}")
                continue
            places = []
            for reference in attribute.rules:
                kind, _, rule_id = reference.partition("#")
                rule = next(r for r in tables[kind].rules if r.id == rule_id)
                if rule.extension and rule.extension.profile:
                    where = f"extension/{rule.extension.element}"
                else:
                    where = f"extension[@type={rule.extension.type}]" if rule.extension else rule.target
                places.append(f"csd:{tables[kind].kind.name}/{where} ({reference})")
            lines.append(f"    + {attribute.name}: {'; '.join(places)}")
    return lines


def profile_coverage(mappings: Mappings) -> list[str]:
    """Coverage of the ROR CSD v2.4 profile's typed extensions (bridge/profile.py, from the official schema):
    for each entity kind with a table, the elements of its typed extension some rule fills, and the others."""
    lines = ["ROR CSD v2.4 profile: typed extension elements filled by the entity tables"]
    for table in mappings.entities.values():
        extension_type = profile.BY_ENTITY.get(table.kind.name)
        if extension_type is None:
            continue
        sequence = profile.SEQUENCES[extension_type]
        filled = {r.extension.element for r in table.rules if r.extension and r.extension.profile}
        lines.append(
            f"  csd:{table.kind.name}/extension ({extension_type}, {table.table}): {len(filled)} of "
            f"{len(sequence)} elements"
        )
        lines.append(f"    filled: {', '.join(e for e in sequence if e in filled) or 'none'}")
        lines.append(f"    not filled: {', '.join(e for e in sequence if e not in filled) or 'none'}")
    return lines


def access_report(mappings: Mappings) -> list[str]:
    """What each ROR access profile may not see (access-profiles.yaml), one line per rule."""
    lines = [f"{ACCESS_TABLE}: what each ROR access profile may not see (no allow-list: unfiltered)"]
    for number, rules in sorted(mappings.access.rules.items()):
        lines.append(f"  profile {number}: {len(rules)} rule(s)")
        for rule in rules:
            what = ", ".join(str(path) for path in rule.remove) or "the whole entity"
            when = (
                " when "
                + " and ".join(
                    f"{test.scope}{'' if test.path is None else ' ' + str(test.path)} "
                    f"{'not in' if test.negate else 'in'} {sorted(test.values)}"
                    for test in rule.when
                )
                if rule.when
                else ""
            )
            lines.append(f"    {rule.id}: {'/'.join(sorted(rule.entities))}: remove {what}{when}")
    restriction = mappings.access.restriction
    if restriction is None:
        lines.append("  restricted-organisation: not described (restrictedOrganisation=true is refused)")
    else:
        trees = ", ".join(sorted(restriction.trees)) or "none"
        lines.append(
            f"  restricted-organisation (restrictedOrganisation=true): {len(restriction.rules)} rule(s), "
            f"trees removed: {trees}; always: a UE's address and its service's opening hours"
        )
        for rule in restriction.rules:
            what = ", ".join(str(path) for path in rule.remove)
            when = " (with conditions)" if rule.when else ""
            lines.append(f"    {rule.id}: {'/'.join(sorted(rule.entities))}: remove {what}{when}")
    lines.append("")
    return lines


def transform_summary(transform: Transform) -> str:
    """What a transform does in one line: the first sentence of its function's docstring ("" when it has none,
    which tests/translate/test_transform_list.py refuses)."""
    func = transform.func
    doc = func.__doc__ or _source_docstrings(func.__module__).get(func.__name__, "")
    text = " ".join(doc.split())
    return _SENTENCE_END.split(text, maxsplit=1)[0].rstrip(".")


@lru_cache(maxsize=8)
def _source_docstrings(module: str) -> dict[str, str]:
    """The docstrings of a module's top-level functions, read from its source: a module compiled by mypyc
    (bridge/hot_path.py) keeps none on its functions, and its source is always beside it."""
    found = sys.modules[module].__file__ if module in sys.modules else None
    if found is None:
        return {}
    source = Path(found).with_name(Path(found).name.partition(".")[0] + ".py")
    tree = ast.parse(source.read_text(encoding="utf-8"))
    return {
        node.name: ast.get_docstring(node) or "" for node in tree.body if isinstance(node, ast.FunctionDef)
    }


def transform_list() -> list[str]:
    """The closed list of transforms (translate/transforms.py), name and one line each, as `mappings check`
    prints it; mappings/README.md's transform table lists the same names (tested)."""
    lines = [f"transforms: {len(TRANSFORMS)} (closed list, translate/transforms.py)"]
    lines.append(f"  (none, {TEXT.name}): {transform_summary(TEXT)}")
    lines += [f"  {name}: {transform_summary(transform)}" for name, transform in TRANSFORMS.items()]
    return lines
