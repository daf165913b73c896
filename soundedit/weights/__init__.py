"""soundedit.weights."""
