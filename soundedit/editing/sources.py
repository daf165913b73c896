"""Where an edit starts: a seed, a saved W/W+ code, the mean latent, or a real photo.

Every source becomes W+ codes of shape ``(N, n_latent, style_dim)`` for the
generator at hand, plus a JSON-able description for the report.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from soundedit.errors import InputError, check_number, check_seed
from soundedit.fileio import check_file

LATENT_SUFFIXES = (".pt", ".pth", ".npy")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class Source:
    """W+ codes to edit and what they came from.

    Attributes:
        w_plus: ``(N, n_latent, style_dim)`` on the generator's device.
        info: JSON-able description, e.g. ``{"kind": "seed", "seed": 3, "truncation": 0.7}``.
        free: True for free generation (start at the mean latent, no regulariser).
    """

    w_plus: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)
    free: bool = False


def _device(generator: torch.nn.Module) -> torch.device:
    return next(generator.parameters()).device


def seed_latent(generator: torch.nn.Module, seed: int, *, truncation: float = 0.7) -> torch.Tensor:
    """Sample ``z`` from a seed and map it to W+ with truncation: ``(1, n_latent, style_dim)``.

    ``z`` is drawn on the CPU from its own ``torch.Generator``, so a seed gives the
    same source on every device and is not affected by other random draws.
    """
    check_number(truncation, "--truncation", low=0, high=1)
    seed = check_seed(seed, "seed")
    z = torch.randn(1, int(generator.style_dim), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return generator.map(z.to(_device(generator)), truncation=truncation)


#: the largest |value| accepted in a W/W+ code.  Real codes (the mapping network's outputs, inversions,
#: edits) are of order 1-10; 1e4 leaves ample room for extrapolated edits while refusing garbage such as
#: 1e30, which would otherwise overflow the generator and be reported as a diverged optimisation.
MAX_LATENT_ABS = 1e4

#: integer codes are odd but exact (and finite); bool, complex and quantized tensors are not codes
_INTEGER_DTYPES = (torch.uint8, torch.uint16, torch.uint32, torch.uint64, torch.int8, torch.int16, torch.int32, torch.int64)


def _check_values(w: torch.Tensor, what: str) -> None:
    """Reject codes that are not real numbers, hold no values, non-finite ones (a NaN code renders a black
    image silently) or absurdly large ones (beyond :data:`MAX_LATENT_ABS`)."""
    if not (w.is_floating_point() or w.dtype in _INTEGER_DTYPES):
        kind = "complex numbers" if w.is_complex() else "booleans" if w.dtype == torch.bool else "non-numbers"
        raise InputError(f"{what}: expected real numbers (a float tensor), got dtype "
                         f"{str(w.dtype).removeprefix('torch.')} ({kind}) in shape {tuple(w.shape)}")
    if w.numel() == 0:
        raise InputError(f"{what}: expected at least one code, got an empty tensor of shape {tuple(w.shape)}")
    if w.is_floating_point() and not bool(torch.isfinite(w).all()):
        bad = int((~torch.isfinite(w)).sum())
        raise InputError(f"{what}: expected finite numbers, got {bad} NaN/inf value(s) in shape {tuple(w.shape)}")
    largest = float(w.detach().double().abs().max())
    if largest > MAX_LATENT_ABS:
        raise InputError(f"{what}: expected |value| <= {MAX_LATENT_ABS:g} for a W/W+ code (real codes are of order "
                         f"1-10), got a largest magnitude of {largest:.3g} in shape {tuple(w.shape)}")


def fit_latent(w: torch.Tensor, n_latent: int, style_dim: int, what: str) -> torch.Tensor:
    """W (D,), (N, D) or W+ (L, D), (N, L, D) -> (N, L, D); anything else is an error naming ``what``."""
    _check_values(w, what)
    w = w.detach().float()
    if w.dim() == 1 and w.shape[0] == style_dim:
        w = w.view(1, 1, style_dim)
    elif w.dim() == 2 and w.shape == (n_latent, style_dim):
        w = w.unsqueeze(0)
    elif w.dim() == 2 and w.shape[1] == style_dim:
        w = w.unsqueeze(1)  # N W codes
    if w.dim() != 3 or w.shape[2] != style_dim or w.shape[1] not in (1, n_latent):
        raise InputError(f"{what}: expected a W code ({style_dim},)/(N, {style_dim}) or W+ ({n_latent}, {style_dim})/"
                         f"(N, {n_latent}, {style_dim}) for this generator, got shape {tuple(w.shape)}")
    return w.expand(-1, n_latent, -1).contiguous()  # a W code is the same w on every layer


def count_codes(w: torch.Tensor, what: str, *, n_latent: int | None = None, style_dim: int | None = None) -> int:
    """How many codes a stored latent ``w`` (as :func:`read_latent` returns it) holds.

    Without the generator's ``n_latent``/``style_dim`` only an ``(N, L, D)`` file's count is known
    (others count as one); with them a 2-D file, one W+ code ``(L, D)`` or N W codes ``(N, D)``, is
    fitted (:func:`fit_latent`, errors naming ``what``) and counted.
    """
    if n_latent is not None and style_dim is not None:
        return int(fit_latent(w, n_latent, style_dim, what).shape[0])
    return int(w.shape[0]) if w.dim() == 3 else 1


def check_one_code(source: Any, where: str, generator: Any = None, *, expected: str = "one code per row") -> None:
    """A latent (a file path, or a tensor) that must hold one code: a batch row's, a mix's source.

    Without ``generator`` (while the job list is read, before any model loads) only a 3-D file's
    code count is clear; with it a 2-D file, one W+ code ``(L, D)`` or N W codes ``(N, D)``, is
    fitted to the generator's ``n_latent``/``style_dim`` and counted too.

    Raises:
        InputError: "WHERE: latent 'w.pt' holds 3 codes (shape (3, 18, 512)); expected EXPECTED".
    """
    is_file = isinstance(source, (str, os.PathLike))
    w = read_latent(source, what=f"{where} latent") if is_file else source
    dims = {} if generator is None else {"n_latent": int(generator.n_latent), "style_dim": int(generator.style_dim)}
    n = count_codes(w, f"{where} latent", **dims)
    if n != 1:
        fitted = " for this generator" if generator is not None and w.dim() != 3 else ""
        what = f"latent {str(source)!r}" if is_file else "the code"
        raise InputError(f"{where}: {what} holds {n} codes{fitted} (shape {tuple(w.shape)}); expected {expected}")


def is_latent_file(source: Any) -> bool:
    """Whether ``source`` names a saved code (a path with a latent suffix) rather than a seed, a tensor or a photo."""
    return isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() in LATENT_SUFFIXES


_EXPECTED_FILE = "a W/W+ code saved by soundedit (.pt/.pth via torch.save, or .npy via numpy.save)"


def _refuse_file(p: Path, what: str, why: str) -> InputError:
    return InputError(f"{what}: expected {_EXPECTED_FILE}, got {str(p)!r} ({why})")


def _read_pt(p: Path, what: str) -> Any:
    """``torch.load(weights_only=True)`` of a ``.pt``/``.pth`` file that is one (sniffed from its bytes).

    Anything else (text, a plain pickle, safetensors) is refused without being unpickled, and torch's
    warnings and advice are kept out of the one-line error.
    """
    import pickle
    import warnings

    from soundedit.models.checkpoint import check_loadable, describe_file, first_sentence, sniff_file

    kind = sniff_file(p)
    if kind == "pickle":
        raise _refuse_file(p, what, "a plain pickle, not a torch.save file; soundedit does not load pickles, "
                                    "which can run code")
    if kind != "torch":  # text, safetensors, a few bytes: torch would fail with e.g. "KeyError: 101"
        raise _refuse_file(p, what, f"not a torch file: {describe_file(p)}")
    unloadable = check_loadable(p)
    if unloadable:
        raise _refuse_file(p, what, unloadable)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's "Detected pickle protocol 4" UserWarning
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a global: never retried unsafely
        raise _refuse_file(p, what, f"a torch file holding objects soundedit does not load: {first_sentence(exc)}"
                           ) from None
    except Exception as exc:  # damaged files raise RuntimeError, EOFError, BadZipFile, KeyError, struct.error...
        raise _refuse_file(p, what, f"truncated or corrupt torch file: {first_sentence(exc)}") from None


def _read_npy(p: Path, what: str) -> torch.Tensor:
    """A ``.npy`` array (never a pickled object array) as a CPU tensor of real numbers."""
    import warnings

    import numpy as np

    from soundedit.models.checkpoint import describe_file, first_sentence

    with open(p, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY":
        raise _refuse_file(p, what, f"not a NumPy .npy file: {describe_file(p)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            array = np.load(p, allow_pickle=False)
    except Exception as exc:  # truncated (EOFError, ValueError), an object array (pickles), a bad header...
        raise _refuse_file(p, what, f"unreadable NumPy file: {first_sentence(exc)}") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        dtype = getattr(array, "dtype", type(array).__name__)
        raise InputError(f"{what} {p.name}: expected real numbers (a float array), got dtype {dtype} "
                         f"in shape {tuple(getattr(array, 'shape', ()))}")
    try:
        # native byte order first: torch refuses a big-endian (">f4") array with a ValueError
        return torch.from_numpy(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("=")))
    except TypeError:  # e.g. float128, uint32 on older torch
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))


def read_latent(path: str | os.PathLike, *, what: str = "--latent") -> torch.Tensor:
    """Read a saved code as stored, without a generator: checks that need no model (file, content, values).

    Used up front by the CLI so a bad latent fails before the models load; :func:`load_latent`
    then fits it to the generator.

    Returns:
        the stored tensor (any of the shapes :func:`load_latent` accepts), on the CPU.

    Raises:
        InputError: missing file, unknown suffix, content that is not a torch/NumPy file of tensors (plain
            pickles are never unpickled), non-real dtype, no values, non-finite or absurdly large values
            (beyond :data:`MAX_LATENT_ABS`); the message starts with ``what``.
    """
    p = check_file(path, what)
    suffix = p.suffix.lower()
    if suffix not in LATENT_SUFFIXES:
        raise InputError(f"{what}: expected a {'/'.join(LATENT_SUFFIXES)} file, got {p.name!r}")
    data: Any = _read_npy(p, what) if suffix == ".npy" else _read_pt(p, what)
    if isinstance(data, dict):
        # our own w_plus.pt stores {"w_plus", "w_source"}; other tools save {"latent": ...}
        key = next((k for k in ("w_plus", "latent", "w", "latents") if k in data), None)
        tensors = [v for v in data.values() if isinstance(v, torch.Tensor)]
        if key is None and len(tensors) != 1:
            raise InputError(f"{what}: {str(p)!r} holds a dict with keys {sorted(map(str, data))}; "
                             "expected a tensor or a dict with 'w_plus'")
        data = data[key] if key is not None else tensors[0]
    if not isinstance(data, torch.Tensor):
        raise InputError(f"{what}: {str(p)!r} holds a {type(data).__name__}, expected a tensor")
    _check_values(data, f"{what} {p.name}")
    return data


def load_latent(path: str | os.PathLike, *, n_latent: int, style_dim: int) -> torch.Tensor:
    """Read a saved W or W+ code (``.pt``/``.pth`` tensor or dict with ``w_plus``, or ``.npy``).

    Returns:
        ``(N, n_latent, style_dim)`` float32 on the CPU.

    Raises:
        InputError: missing file, unknown suffix, unreadable content, empty or non-finite codes, or wrong shape.
    """
    return fit_latent(read_latent(path), n_latent, style_dim, f"--latent {Path(path).name}")


def mean_latent(generator: torch.nn.Module) -> torch.Tensor:
    """The generator's mean latent as W+ ``(1, n_latent, style_dim)`` (free generation's start)."""
    with torch.no_grad():
        w = generator.mean_latent()
    return fit_latent(w, int(generator.n_latent), int(generator.style_dim), "generator.mean_latent()").to(_device(generator))


def invert_photo(generator: torch.nn.Module, path: str | os.PathLike, **kwargs: Any) -> torch.Tensor:
    """Invert a real photo into W+ through :func:`soundedit.inversion.invert_image`.

    Raises:
        InputError: the inversion module is not available, or the photo is missing.
    """
    p = check_file(path, "IMAGE")
    invert = getattr(importlib.import_module("soundedit.inversion"), "invert_image", None)
    if invert is None:
        raise InputError(f"IMAGE {p.name!r}: photo sources need the inversion module (soundedit.inversion.invert_image), "
                         "which is not available in this version; use --seed N or --latent w.pt")
    out = invert(p, generator=generator, **kwargs)
    w = getattr(out, "w_plus", out)
    return fit_latent(w, int(generator.n_latent), int(generator.style_dim), f"inversion of {p.name}").to(_device(generator))


def resolve_source(generator: torch.nn.Module, source: Any = None, *, truncation: float = 0.7,
                   free: bool = False, inversion: dict[str, Any] | None = None) -> Source:
    """Turn a user's source into W+ codes.

    Args:
        generator: the generator the codes are for.
        source: an ``int`` seed; a W/W+ tensor; a path to a ``.pt``/``.pth``/``.npy`` code or to a
            photo (inverted); ``"mean"`` or ``None`` with ``free=True`` for the mean latent.
        truncation: for seeds.
        free: free generation from the mean latent (``source`` must then be ``None`` or ``"mean"``).
        inversion: extra keyword arguments for the photo inversion.

    Raises:
        InputError: unusable source.
    """
    n_latent, style_dim = int(generator.n_latent), int(generator.style_dim)
    if free or (isinstance(source, str) and source == "mean"):
        if source not in (None, "mean"):
            raise InputError(f"--free starts from the mean latent; it cannot be combined with a source ({source!r})")
        return Source(mean_latent(generator), {"kind": "mean"}, free=True)
    if source is None:
        raise InputError("source: expected a seed, a latent file or a photo (or free=True), got none")
    if isinstance(source, bool):
        raise InputError(f"source: expected a seed, a W/W+ tensor or a path, got {source!r}")
    if isinstance(source, int):
        return Source(seed_latent(generator, source, truncation=truncation),
                      {"kind": "seed", "seed": source, "truncation": truncation})
    if isinstance(source, torch.Tensor):
        return Source(fit_latent(source, n_latent, style_dim, "source").to(_device(generator)), {"kind": "tensor"})
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.suffix.lower() in LATENT_SUFFIXES:
            w = load_latent(p, n_latent=n_latent, style_dim=style_dim)
            return Source(w.to(_device(generator)), {"kind": "latent", "path": str(p)})
        if p.suffix.lower() in IMAGE_SUFFIXES:
            return Source(invert_photo(generator, p, **(inversion or {})), {"kind": "photo", "path": str(p)})
        raise InputError(f"source: expected a latent ({'/'.join(LATENT_SUFFIXES)}) or a photo "
                         f"({'/'.join(IMAGE_SUFFIXES)}), got {str(p)!r}")
    raise InputError(f"source: expected a seed, a W/W+ tensor or a path, got {type(source).__name__}")
