"""``python -m inference``: see ``inference.cli``."""

from inference.cli import main

raise SystemExit(main())
