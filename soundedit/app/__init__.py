"""soundedit.app."""
