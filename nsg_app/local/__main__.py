"""``python -m nsg_app.local PACKAGE.zip -o DIR [--cores N] ...``: see cli.py."""

from .cli import main

raise SystemExit(main())
