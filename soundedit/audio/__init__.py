"""soundedit.audio."""
