"""A restricted unpickler for NVIDIA's StyleGAN network pickles.

NVIDIA's ``.pkl`` files are plain pickles that embed the networks' Python source
(``torch_utils.persistence`` re-``exec``s it on load) and can name any importable
callable.  Loading one with ``pickle.load`` runs whatever the file says.  Here every
global the pickle asks for goes through an allow-list:

- ``torch_utils.persistence._reconstruct_persistent_obj`` becomes
  :class:`PersistentObject`, a plain record of the class name and the object's state
  (``_parameters``, ``_buffers``, ``_modules``, init kwargs ...); the embedded source is
  kept as a string and never executed;
- ``dnnlib.tflib.network.Network`` (TensorFlow-era pickles) becomes :class:`TFNetwork`,
  a record of its variables (name, numpy array) and components;
- ``dnnlib.EasyDict`` becomes a plain ``dict``;
- tensors are rebuilt through torch's own rebuild functions, with their storage bytes
  read by ``torch.load(weights_only=True)``; numpy arrays through numpy's
  reconstruction functions (plain ``ndarray`` only); ``collections.OrderedDict``,
  ``set``/``frozenset`` and the latin-1 bytes codec that protocol 2 uses are allowed.

Anything else (``os.system``, ``builtins.eval``, arbitrary classes ...) raises
:class:`~soundedit.errors.CheckpointError` *before* it is called.
"""

from __future__ import annotations

import codecs
import collections
import io
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from soundedit.errors import CheckpointError


class PersistentObject:
    """Data stand-in for an object of NVIDIA's ``torch_utils.persistence`` classes.

    Attributes:
        class_name: e.g. ``"Generator"``, ``"SynthesisLayer"``.
        state: the object's ``__dict__`` as pickled (``_parameters``, ``_buffers``,
            ``_modules``, ``_init_kwargs`` and plain attributes).
        module_src: the embedded source code (kept as text, never executed).
    """

    def __init__(self, class_name: str, state: dict, module_src: str | None) -> None:
        self.class_name = class_name
        self.state = state
        self.module_src = module_src

    def tensors(self) -> dict[str, torch.Tensor]:
        """All parameters and buffers of this module and its children, by dotted name."""
        out: dict[str, torch.Tensor] = {}
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if isinstance(value, torch.Tensor):
                    out[name] = value
        for child_name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, PersistentObject):
                out.update({f"{child_name}.{k}": v for k, v in child.tensors().items()})
        return out

    def modules(self, prefix: str = "") -> dict[str, "PersistentObject"]:
        """This object and all persistent children, by dotted name ("" for self)."""
        out = {prefix: self}
        for child_name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, PersistentObject):
                out.update(child.modules(f"{prefix}.{child_name}" if prefix else child_name))
        return out

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name})"


class TFNetwork:
    """Data stand-in for ``dnnlib.tflib.network.Network`` (NVIDIA's TensorFlow-era pickles)."""

    def __setstate__(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"TensorFlow network state should be a dict, got {type(state).__name__}")
        self.state = state

    @property
    def name(self) -> str:
        return str(self.state.get("name", ""))

    @property
    def version(self) -> int:
        return int(self.state.get("version", 0))

    @property
    def static_kwargs(self) -> dict:
        return dict(self.state.get("static_kwargs") or {})

    def variables(self) -> dict[str, Any]:
        """All variables of the network and its components, by TF scope path (as numpy arrays)."""
        out: dict[str, Any] = {}
        for name, value in self.state.get("variables") or []:
            out[name] = value
        for comp_name, comp in (self.state.get("components") or {}).items():
            if isinstance(comp, TFNetwork):
                out.update({f"{comp_name}/{k}": v for k, v in comp.variables().items()})
        return out

    def __repr__(self) -> str:
        return f"TFNetwork({self.name})"


class _Refused(Exception):
    """A global outside the allow-list (reported by :func:`load_nvidia_pickle` with the path)."""


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise _Refused(f"malformed torch_utils.persistence record {type(meta).__name__}")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise _Refused(f"persistent object {meta['class_name']} has no state dict")
    return PersistentObject(meta["class_name"], state, meta.get("module_src"))


class _EasyDict(dict):
    """Stand-in for ``dnnlib.EasyDict`` (a dict with attribute access); kept a plain dict."""

    def __setstate__(self, state: Any) -> None:  # EasyDict pickles may carry an empty __dict__
        pass


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Pickle protocol 2 writes bytes as codecs.encode(str, "latin1"); nothing else is needed.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise _Refused(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


def _load_from_bytes(data: bytes):
    # torch pickles a storage as a tiny legacy torch.save blob; read it as weights only.
    if not isinstance(data, (bytes, bytearray)):
        raise _Refused("tensor storage is not bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "TypedStorage is deprecated"
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, False, collections.OrderedDict())


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    if not isinstance(data, torch.Tensor):
        raise _Refused("parameter data is not a tensor")
    return data.detach()


def _rebuild_from_type_v2(func, new_type, args, state):
    # func was itself resolved through the allow-list; the subclass is dropped (plain tensors).
    if new_type not in (torch.Tensor, torch.nn.Parameter) or func not in _TENSOR_FUNCS:
        raise _Refused(f"tensor subclass {new_type!r}")
    return func(*args)


def _numpy_allowed() -> dict[tuple[str, str], Any]:
    import numpy as np

    def reconstruct(subtype, shape, dtype):
        if subtype is not np.ndarray:
            raise _Refused(f"numpy array subclass {subtype!r}")
        return np.ndarray.__new__(np.ndarray, shape, dtype)

    # numpy >= 2 names the module numpy._core; older pickles (all of NVIDIA's) numpy.core.
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    out: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "_reconstruct")] = reconstruct
        out[(mod, "scalar")] = multiarray.scalar
    return out


_TENSOR_FUNCS = {_rebuild_tensor_v2, _rebuild_parameter}

_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _codecs_encode,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): torch.Tensor,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, allowed: dict[tuple[str, str], Any]) -> None:
        super().__init__(file)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused(f"persistent id {type(pid).__name__}")


def load_nvidia_pickle(path: str | os.PathLike) -> Any:
    """Unpickle an NVIDIA network pickle into plain data, refusing anything outside the allow-list.

    Returns:
        Whatever the pickle holds, with NVIDIA's network objects as :class:`PersistentObject`
        / :class:`TFNetwork` (e.g. ``{"G_ema": PersistentObject("Generator"), ...}`` or
        ``(TFNetwork G, TFNetwork D, TFNetwork Gs)``).

    Raises:
        CheckpointError: the pickle names anything not allowed (never executed), or is
            truncated / corrupt.
    """
    path = Path(path)
    allowed = {**_ALLOWED, **_numpy_allowed()}
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, allowed).load()
    except _Refused as err:
        raise CheckpointError(f"{path}: refused to load: the pickle asks for {err}, which is not part of a "
                              f"StyleGAN network (pickles can run code; only NVIDIA's network classes, tensors, "
                              f"numpy arrays and plain containers are allowed)") from None
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RuntimeError, MemoryError) as err:
        raise CheckpointError(f"{path}: cannot read the pickle (truncated or corrupt?): "
                              f"{type(err).__name__}: {err}") from None
