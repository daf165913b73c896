"""soundedit.text."""
