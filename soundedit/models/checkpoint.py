"""Checks shared by the checkpoint loaders (generator, identity net, audio encoder)."""

from __future__ import annotations

import os

import torch

from soundedit.errors import CheckpointError


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str | os.PathLike,
                     what: str | None = None) -> None:
    """Raise CheckpointError naming the first missing / unexpected / wrongly shaped keys.

    Args:
        model: the module the state dict must fit exactly.
        state: the checkpoint's tensors.
        source: the file (named in the message).
        what: what the file should have held (default ``a <model class>``).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k}: expected {tuple(v.shape)}, got {tuple(state[k].shape)}"
             for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:5]}" + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:5]}"
                        + (f" (+{len(unexpected) - 5} more)" if len(unexpected) > 5 else ""))
    if wrong:
        problems.append(f"wrong shapes {wrong[:3]}" + (f" (+{len(wrong) - 3} more)" if len(wrong) > 3 else ""))
    if problems:
        raise CheckpointError(f"{source}: weights do not fit {what or 'a ' + type(model).__name__}: "
                              + "; ".join(problems))
