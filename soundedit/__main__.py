"""``python -m soundedit ...`` runs the command line (same as the ``soundedit`` script)."""

from soundedit.cli.main import main

main()
