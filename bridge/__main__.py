"""`python -m bridge` runs the `ror-bridge` command line."""

from bridge.cli import main

raise SystemExit(main())
