"""Does a file hold what its weights.lock slot says (its ``layout``)?

A pinned entry is proved by its sha256. An unpinned one has nothing to compare with, so
before a file is cached (import, incoming/, an unpinned download) or pinned, it is read
with the loader of its slot's layout: a text file or a CLIP file offered as a generator is
refused then, instead of being cached, pinned and failing at every later use.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

from soundedit.errors import CheckpointError, InputError


def _loader(module: str, function: str) -> Callable[[Path], None]:
    """The loader ``module.function(path)``, imported when called (each pulls in torch and its model)."""
    def load(path: Path) -> None:
        getattr(importlib.import_module(module), function)(path)

    return load


def _bz2(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(3)
    if head != b"BZh":
        from soundedit.models.checkpoint import describe_file

        raise CheckpointError(f"{path}: expected a bzip2-compressed dlib shape predictor (.dat.bz2), "
                              f"got {describe_file(path)}")


#: layout tag of weights.lock -> a check that raises CheckpointError when the file is not of that layout
CHECKS: dict[str, Callable[[Path], None]] = {
    "rosinality-stylegan2-pt": _loader("soundedit.models.stylegan2.loading", "read_generator_checkpoint"),
    "nvidia-stylegan2-pkl": _loader("soundedit.models.stylegan2.loading", "read_generator_checkpoint"),
    "authors-audio-encoder-pth": _loader("soundedit.models.audio_encoder", "load_audio_encoder"),
    "openai-clip-pt": _loader("soundedit.models.clip_space", "_load_openai_layout"),
    "treb1en-irse50-pth": _loader("soundedit.models.identity", "load_identity_net"),
    "e4e-pt": _loader("soundedit.inversion.e4e", "load_e4e"),
    "torchvision-vgg16-pth": _loader("soundedit.inversion.perceptual", "vgg16_features_state"),
    "dlib-shape-predictor-dat-bz2": _bz2,
}


def check_layout(name: str, layout: str, path: str | os.PathLike) -> None:
    """Raise ``InputError`` when ``path`` does not load as weights ``name`` of ``layout``.

    Layouts without a check (e.g. ones added to a private weights.lock) pass.
    """
    check = CHECKS.get(layout)
    if check is None:
        return
    try:
        check(Path(path))
    except CheckpointError as exc:
        detail = str(exc).removeprefix(f"{os.fspath(path)}: ")  # the loaders start with the path, named already
        raise InputError(f"{os.fspath(path)} is not weights {name!r} (layout {layout}): {detail}") from None
