"""Allows ``python -m procfs_view``."""

from procfs_view.cli import main

raise SystemExit(main())
