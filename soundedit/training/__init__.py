"""soundedit.training."""
