"""``soundedit env``: versions, devices, CUDA-op status, cache and weights, for bug reports."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

from soundedit.cli._common import JsonOpt, emit_json, stdout
from soundedit.cli.main import app

# distribution name -> label shown
_PACKAGES = {
    "soundedit": "soundedit", "torch": "torch", "torchaudio": "torchaudio", "torchvision": "torchvision",
    "open_clip_torch": "open_clip", "timm": "timm", "numpy": "numpy", "soundfile": "soundfile",
    "typer": "typer", "rich": "rich", "nltk": "nltk", "ninja": "ninja",
}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _devices() -> dict:
    import torch

    info: dict = {"cuda_available": torch.cuda.is_available(), "cuda_build": torch.version.cuda, "gpus": []}
    if info["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            info["gpus"].append({"index": i, "name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
                                 "capability": f"{props.major}.{props.minor}"})
    mps = getattr(torch.backends, "mps", None)
    info["mps_available"] = bool(mps is not None and mps.is_available())
    from soundedit.runtime import resolve_device

    info["default_device"] = str(resolve_device("auto"))
    return info


def _ops_status() -> dict:
    """The StyleGAN2 CUDA-op status (``ops.status()``)."""
    try:
        from soundedit.models.stylegan2 import ops

        return ops.status()
    except Exception as exc:  # a bug report must still come out when the ops check itself breaks
        return {"available": False, "error": f"status() failed: {type(exc).__name__}: {exc}"}


def _steps_status() -> dict:
    """How optimisation steps run on CUDA (``soundedit.steps.graph_status()``)."""
    from soundedit.steps import graph_status

    return graph_status()


def _ops_summary(status: dict) -> str:
    """One readable line from ``ops.status()`` (the full dict is in ``--json``)."""
    from rich.markup import escape

    parts = [f"mode {status['mode']}"] if status.get("mode") else []
    for op, info in (status.get("ops") or {}).items():
        parts.append(f"{op}: {info.get('path')} ({info.get('why')})" if isinstance(info, dict) else f"{op}: {info}")
    if "built" in status:
        parts.append(f"built: {'yes' if status['built'] else 'no'}")
    if status.get("nvcc_version"):
        parts.append(f"nvcc {status['nvcc_version']}")
    error = status.get("error")
    if error:
        parts.append(f"error: {error}")
    text = escape("; ".join(parts))
    return f"[red]{text}[/red]" if error else text


def _weights() -> dict:
    from soundedit import weights
    from soundedit.errors import InputError

    info: dict = {}
    try:
        info["offline"] = weights.offline()
    except InputError as exc:  # reported, not raised (as below): this is the bug-report command
        info.update(offline=None, offline_error=str(exc))
    try:
        info.update(home=weights.home_dir(), cache=weights.weights_dir())
    except InputError as exc:  # a bad SOUNDEDIT_HOME is reported, not raised: this is the bug-report command
        info.update(home=None, cache=None, home_error=str(exc))
    try:
        lock = weights.load_lock()
    except InputError as exc:  # a broken lock is exactly what a bug report should show
        info.update(lock=None, lock_error=str(exc), present=[], absent=[])
        return info
    if "home_error" in info:  # no cache to look into
        info.update(lock=lock.path, present=[], absent=[entry.name for entry in lock])
        return info
    present, absent = [], []
    for entry in lock:
        (present if weights.cached_path(entry) is not None else absent).append(entry.name)
    info.update(lock=lock.path, present=present, absent=absent)
    return info


def collect() -> dict:
    """Everything ``soundedit env`` reports, as plain data."""
    versions = {"python": platform.python_version()}
    versions.update({label: _version(dist) for dist, label in _PACKAGES.items()})
    try:
        import soundfile

        versions["libsndfile"] = soundfile.__libsndfile_version__
    except (ImportError, OSError):
        versions["libsndfile"] = None
    return {
        "versions": versions,
        "platform": {"system": platform.platform(), "machine": platform.machine(), "executable": sys.executable},
        "devices": _devices(),
        "stylegan2_ops": _ops_status(),
        "optimiser_steps": _steps_status(),
        "weights": _weights(),
    }


@app.command()
def env(json_out: JsonOpt = False) -> None:
    """Versions, devices, CUDA-op build status, cache folder and present weights, for bug reports.

    Example: soundedit env --json
    """
    data = collect()
    if json_out:
        emit_json(data)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_header=False, title="soundedit env", title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, version in data["versions"].items():
        table.add_row(name, version or "[red]not installed[/red]")
    table.add_row("platform", f"{data['platform']['system']} ({data['platform']['machine']})")
    dev = data["devices"]
    gpus = ", ".join(f"{g['name']} ({g['memory_gb']} GB, sm {g['capability']})" for g in dev["gpus"]) or "none"
    table.add_row("device", f"{dev['default_device']} (CUDA build {dev['cuda_build'] or 'none'}; GPUs: {gpus}; "
                            f"MPS: {'yes' if dev['mps_available'] else 'no'})")
    table.add_row("stylegan2 ops", _ops_summary(data["stylegan2_ops"]))
    steps = data["optimiser_steps"]
    table.add_row("optimiser steps", escape(f"{steps['path']} ({steps['why']})"))
    w = data["weights"]
    cache = f"[red]{escape(w['home_error'])}[/red]" if w.get("home_error") else escape(str(w["cache"]))
    offline = f" [red]({escape(w['offline_error'])})[/red]" if w.get("offline_error") else (
        " (offline)" if w["offline"] else "")
    table.add_row("cache", f"{cache}{offline}")
    table.add_row("weights.lock", str(w["lock"]) if w["lock"] else f"[red]{w['lock_error']}[/red]")
    table.add_row("weights present", ", ".join(w["present"]) or "none")
    table.add_row("weights absent", ", ".join(w["absent"]) or "none")
    stdout.print(table)
