"""soundedit.evaluation."""
