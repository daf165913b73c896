"""soundedit.editing."""
