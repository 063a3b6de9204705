"""translate/loaders/: loads and validates the `mappings/` tables into the types of translate/tables.py, one
module per kind of table (`reading` the files, `code_tables`, `function_tables`, `entity_tables`, `directory`
all of them); mappings/README.md describes the format. tables.py never imports this package.
"""

from bridge.translate.loaders.directory import load_mappings

__all__ = ["load_mappings"]
