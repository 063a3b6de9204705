"""Loads and validates every table of one `mappings/` directory into one immutable `Mappings`
(translate/tables.py), then checks what spans tables (delta searches against entity tables).
translate/loaders/: every problem raises MappingTableError naming the table, the rule and the place.
"""

from __future__ import annotations

from pathlib import Path

from bridge.errors import MappingTableError
from bridge.translate import feeds
from bridge.translate.access_profiles import load_access_profiles
from bridge.translate.compiled import tables_by_type
from bridge.translate.delta import feed_directories
from bridge.translate.loaders.code_tables import load_code_tables, load_identities, load_systems
from bridge.translate.loaders.entity_tables import load_entities, load_model
from bridge.translate.loaders.function_tables import load_functions, load_regions
from bridge.translate.tables import FUNCTIONS, Mappings


def load_mappings(directory: Path) -> Mappings:
    """Load and validate every table of `directory`; raises MappingTableError naming table, rule and path."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MappingTableError(str(directory), None, None, "mappings directory not found")
    systems = load_systems(directory)
    code_tables = load_code_tables(directory, systems)
    identities = load_identities(directory)
    functions, aliases, encapsulated, timezone, tag_system, modifications = load_functions(directory)
    entities = load_entities(directory, code_tables)
    regions = load_regions(directory)
    model = load_model(directory, entities)
    mappings = Mappings(
        directory=directory,
        functions=functions,
        aliases=aliases,
        encapsulated_defaults=encapsulated,
        timezone=timezone,
        entities=entities,
        systems=systems,
        code_tables=code_tables,
        identities=identities,
        regions=regions,
        region_tag_system=tag_system,
        model=model,
        modifications=modifications,
        access=load_access_profiles(directory),
    )
    _check_deltas(mappings)
    # the entity tables compiled into functions once, now (translate/compiled.py), not on the first answer
    tables_by_type(mappings, {table.kind.directory for table in entities.values()})
    return mappings


def _check_deltas(mappings: Mappings) -> None:
    """Each delta function searches the changes of every type its records read for their content
    (translate/feeds.py: the change sets are derived from the entity tables, not listed by hand)."""
    specs = [*mappings.functions.values(), *([mappings.modifications] if mappings.modifications else [])]
    for spec in specs:
        if spec.delta is None:
            continue
        for table in feeds.tables_of(mappings, feed_directories(spec.delta, spec.directories)):
            feeds.feeds(table)  # MappingTableError for a read the ROR model has no reference for
        searched = {query.resource for query in spec.queries}
        directories = feed_directories(spec.delta, spec.directories)
        missing = feeds.changed_types(mappings, directories) - searched
        if missing:
            where = "modifications" if spec is mappings.modifications else f"functions.{spec.name}"
            raise MappingTableError(
                FUNCTIONS,
                spec.name,
                f"{where}.queries",
                f"the records read {', '.join(sorted(missing))} for their content: search their changes too",
            )
