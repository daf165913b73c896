"""The ``soundedit`` command line (Typer). Thin: parse, call the library, print."""
