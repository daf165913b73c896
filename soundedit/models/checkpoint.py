"""Reading and checks shared by the checkpoint loaders (generator, identity net, audio encoder, CLIP,
e4e, VGG16)."""

from __future__ import annotations

import os
import pickle
import struct
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from soundedit.errors import CheckpointError

#: a legacy (pre-zip) ``torch.save`` file starts with this magic number, pickled (LONG1 opcode) after
#: the PROTO opcode (and, from pickle protocol 4 on, a FRAME opcode with its 8-byte length)
_TORCH_LEGACY_MAGIC = b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."


def sniff_file(path: str | os.PathLike) -> str:
    """What a file holds, from its first bytes (never its name).

    Returns:
        ``"torch"`` (zip or legacy ``torch.save``; TorchScript archives are zips too), ``"pickle"``
        (a plain pickle), ``"safetensors"``, ``"short"`` (under 9 bytes) or ``"unknown"``.
    """
    with open(path, "rb") as f:
        head = f.read(32)
    if len(head) < 9:
        return "short"
    if head.startswith(b"PK\x03\x04") or _legacy_protocol(head) is not None:
        return "torch"
    if head[:1] == b"\x80":
        return "pickle"
    if head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < 100_000_000:
        return "safetensors"
    return "unknown"


def _legacy_protocol(head: bytes) -> int | None:
    """The pickle protocol of a legacy ``torch.save`` file from its first bytes, or None if it is not one."""
    if len(head) < 2 or head[:1] != b"\x80":
        return None
    body = head[2:]
    if head[1] >= 4 and body[:1] == b"\x95":  # FRAME + 8-byte length
        body = body[9:]
    if body.startswith(_TORCH_LEGACY_MAGIC) or (body and _TORCH_LEGACY_MAGIC.startswith(body)):
        return head[1]
    return None


def check_loadable(path: str | os.PathLike) -> str | None:
    """Why ``torch.load(weights_only=True)`` cannot read this PyTorch file though it is one, or None.

    Files pickled with protocol 4 or 5 (``torch.save(..., pickle_protocol=4)``, zip or legacy pre-1.6
    format) are framed, and torch's restricted unpickler stops at the first FRAME opcode ("Unsupported
    operand 149"), which would otherwise read as a file holding forbidden objects. Protocols 2 (torch's
    default) and 3 load.
    """
    with open(path, "rb") as f:
        head = f.read(32)
    protocol = _legacy_protocol(head)
    if protocol is not None and protocol >= 4:
        return (f"a legacy (pre-zip) torch.save file in pickle protocol {protocol}, which torch's safe loader "
                f"cannot read; save it again with a current torch (torch.save writes zip files since 1.6)")
    if head.startswith(b"PK\x03\x04"):
        protocol = _zip_pickle_protocol(path)
        if protocol is not None and protocol >= 4:
            return (f"a torch.save file pickled with protocol {protocol}, which torch's safe loader cannot read; "
                    f"save it again with torch.save's default protocol")
    return None


def _zip_pickle_protocol(path: str | os.PathLike) -> int | None:
    """The pickle protocol of a zip ``torch.save`` file's ``<archive>/data.pkl``, or None (no such entry,
    or not readable: ``torch.load`` then says what is wrong)."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")), None)
            if name is None:
                return None
            with archive.open(name) as member:
                head = member.read(2)
    except (OSError, zipfile.BadZipFile, RuntimeError, ValueError):  # damaged: torch.load reports it
        return None
    return head[1] if len(head) == 2 and head[:1] == b"\x80" else None


def describe_file(path: str | os.PathLike) -> str:
    """A few words on what a file that is not the expected checkpoint is, for error messages."""
    with open(path, "rb") as f:
        head = f.read(64)
    kind = sniff_file(path)
    if not head:
        return "an empty file"
    if kind == "short":
        return f"a file of only {len(head)} bytes"
    if kind in ("safetensors", "pickle"):
        return f"a {kind} file"
    if kind == "torch":
        return "a PyTorch file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"unrecognised data (first bytes {head[:8]!r})"
    return f"text ({text.splitlines()[0][:24]!r}...)" if text.strip() else "blank text"


def load_torch(path: str | os.PathLike, *, what: str, allow: Iterable[type] = ()) -> Any:
    """``torch.load(weights_only=True)`` of a checkpoint that should hold ``what``.

    Only zip and legacy ``torch.save`` files reach ``torch.load``: anything else (text, a
    safetensors or plain pickle file, a truncated file) would fail deep inside the unpickler
    with errors like ``KeyError: 101``; it is refused here with what the file is instead.

    Args:
        path: the file.
        what: what it should hold, for messages (e.g. ``"an audio encoder checkpoint"``).
        allow: extra classes the restricted unpickler may build (e.g. ``argparse.Namespace``).

    Raises:
        CheckpointError: not a PyTorch file, truncated or corrupt, or holding objects other
            than tensors and plain containers.
    """
    path = Path(path)
    if sniff_file(path) != "torch":
        raise CheckpointError(f"{path}: not {what}: expected a PyTorch checkpoint file (torch.save), "
                              f"got {describe_file(path)}")
    unloadable = check_loadable(path)
    if unloadable:
        raise CheckpointError(f"{path}: cannot read {what}: {unloadable}")
    try:
        with torch.serialization.safe_globals(list(allow)), warnings.catch_warnings():
            # legacy protocol-3 files load, after torch's "Detected pickle protocol 3" warning
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: refused to load {what}: the checkpoint holds objects other than tensors "
                              f"and plain containers ({first_sentence(err)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError, TypeError,
            AttributeError, struct.error) as err:  # torch raises all of these for damaged files
        raise CheckpointError(f"{path}: cannot read {what} (truncated or corrupt PyTorch file?): "
                              f"{first_sentence(err)}") from None


def first_sentence(err: BaseException, *, limit: int = 120) -> str:
    """``"Type: the part of the message that names the problem"`` for a torch/numpy loading error: torch's
    run on with advice after the first sentence, some of it unsafe (re-run ``torch.load`` with
    ``weights_only=False``); for a weights-only refusal the problem follows its "WeightsUnpickler error:"."""
    text = str(err).strip()
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    first = text.splitlines()[0].split(". ")[0].strip().rstrip(".") if text else ""
    if len(first) > limit:
        first = first[:limit - 3] + "..."
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


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
