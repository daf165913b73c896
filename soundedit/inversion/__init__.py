"""soundedit.inversion."""
