"""``python -m client_sync``: the command line (client_sync.cli)."""

from client_sync.cli import main

raise SystemExit(main())
