"""Edit outputs on disk: images, a labelled comparison, a progress animation, W+ and a report.

An edit's files are one set (:func:`soundedit.fileio.output_set`): written aside and moved
into the folder together, ``report.json`` last, replacing an earlier edit's set there. A folder
with a ``report.json`` is a finished edit (batch runs use that to resume), and an interrupted
save leaves the folder as it was.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import platform
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch

from soundedit.editing.result import EditResult, MixResult
from soundedit.fileio import output_set, write_bytes, write_json

#: the subfolder a photo edit's inversion is saved into (before the edit, so a failed edit keeps it)
INVERSION_FOLDER = "inversion"
#: file names inside an edit's output folder
OUTPUTS = {
    "source": "source.png",
    "edited": "edited.png",
    "comparison": "comparison.png",
    "progress": "progress.gif",
    "gates": "gates.png",
    "w_plus": "w_plus.pt",
    "report": "report.json",
}


def to_pil(image: torch.Tensor):
    """One ``(3, H, W)`` image in [-1, 1] (or uint8) -> ``PIL.Image`` RGB."""
    from PIL import Image

    if image.dtype != torch.uint8:
        image = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(image.cpu().permute(1, 2, 0).numpy(), mode="RGB")


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def labelled_row(images: list, labels: list[str]):
    """Images side by side, each with its label in a caption strip above it."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = images[0].size
    font_size = max(10, min(32, w // 16))
    try:
        font = ImageFont.load_default(size=font_size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    strip = font_size + 8
    canvas = Image.new("RGB", (w * len(images), h + strip), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (img, label) in enumerate(zip(images, labels)):
        canvas.paste(img.resize((w, h)), (i * w, strip))
        text = label
        # shorten long labels (file names, prompts) to fit their panel
        while len(text) > 4 and draw.textlength(text, font=font) > w - 8:
            text = text[:-4] + "..."
        draw.text((i * w + 4, 4), text, fill="black", font=font)
    return canvas


def progress_gif(frames: list, *, max_side: int = 256, duration_ms: int = 120) -> bytes:
    """An animated GIF of PIL frames (downscaled to ``max_side``; the last frame held longer)."""
    small = []
    for f in frames:
        scale = min(1.0, max_side / max(f.size))
        small.append(f.resize((max(1, round(f.width * scale)), max(1, round(f.height * scale)))))
    buf = io.BytesIO()
    durations = [duration_ms] * (len(small) - 1) + [duration_ms * 8]
    small[0].save(buf, format="GIF", save_all=True, append_images=small[1:], duration=durations, loop=0)
    return buf.getvalue()


def gates_plot(layer_weights: torch.Tensor) -> bytes:
    """A bar chart of the final per-layer weights of the similarity term (PNG bytes)."""
    from soundedit.evaluation.reports import new_figure

    values = layer_weights.flatten().tolist()
    fig = new_figure(max(4, 0.35 * len(values)), 2.6)
    ax = fig.add_subplot()
    ax.bar(range(1, len(values) + 1), values, color="#4a7bd0")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("W+ layer")
    ax.set_ylabel("similarity weight")
    ax.set_xticks(range(1, len(values) + 1))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def versions() -> dict[str, str]:
    """Versions that matter for reproducing an edit."""
    import numpy

    import soundedit

    out = {"soundedit": soundedit.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
           "python": platform.python_version()}
    try:
        import open_clip

        out["open_clip"] = open_clip.__version__
    except ImportError:
        pass
    return out


def _scalars(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.tolist()
    return v


def build_report(result: EditResult) -> dict[str, Any]:
    """The JSON report of a (single- or multi-item) result; per-item values are lists."""
    single = len(result) == 1

    def one(v: Any) -> Any:
        v = _scalars(v)
        return v[0] if single and isinstance(v, list) and len(v) == 1 else v

    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "settings": result.settings,
        **{k: one(v) for k, v in result.meta.items()},
        "final_losses": {k: one(v) for k, v in result.final_losses().items()},
        "metrics": {k: one(v) for k, v in result.metrics.items()},
        "gates": one(result.gates),
        "layer_weights": one(result.layer_weights),
        "n_latent": result.w_plus.shape[1],
        "seconds": result.seconds,
    }


def save_result(result: EditResult, out_dir: str | os.PathLike, *, label: str | None = None,
                keep: Collection[str] = ()) -> dict[str, Path]:
    """Write ``source.png``, ``edited.png``, ``comparison.png``, ``progress.gif``, ``gates.png``,
    ``w_plus.pt`` and (last) ``report.json`` into ``out_dir``, as one set that replaces an earlier
    edit's or mix's files there (other files are left alone).

    A batch of N > 1 is written as ``out_dir/item-000 ...``, one complete folder per item.

    Args:
        result: what to save.
        out_dir: the folder (created if needed).
        label: caption of the edited panel in ``comparison.png``; default ``meta["label"]``.
        keep: entries of ``out_dir`` the set must not replace although an earlier result's (e.g. the
            ``item-001`` folder holding the code this run started from).

    Returns:
        output name -> path (for N > 1, the paths of the last item; each folder has the same names).
    """
    out = Path(out_dir)
    with output_set(out, replaces=lambda name: _result_entry(name) and name not in keep) as stage:
        if len(result) == 1:
            names = _write_result(result, stage, label)
        else:
            for i in range(len(result)):
                names = _write_result(result.item(i), stage / f"item-{i:03d}", label)
    return {k: (out if len(result) == 1 else out / f"item-{len(result) - 1:03d}") / v for k, v in names.items()}


def check_result_folder(out_dir: str | os.PathLike, n_items: int = 1, *, mix: bool = False,
                        keep: Collection[str] = (), what: str = "--out") -> None:
    """Refuse, before any work, an output folder where :func:`save_result` (``n_items`` codes) or
    :func:`save_mix` would meet a folder of the user's bearing one of its output names (the save would
    refuse it only after the optimisation)."""
    from soundedit.fileio import check_set_entries

    names = (MIX_OUTPUTS if mix else OUTPUTS).values() if n_items == 1 else [f"item-{i:03d}" for i in range(n_items)]
    check_set_entries(out_dir, [n for n in names if n not in keep], what=what,
                      replaces=lambda name: _result_entry(name) and name not in keep)


def _result_entry(name: str) -> bool:
    """Whether a folder entry belongs to a saved edit or mix, of either kind: the next save into the
    folder replaces them all, so a folder never shows one run's report beside another run's images.
    A photo's ``inversion/`` is not claimed: it may be the code the next run starts from."""
    return name in OUTPUTS.values() or name in MIX_OUTPUTS.values() or re.fullmatch(r"item-\d{3,}", name) is not None


def _write_result(result: EditResult, folder: Path, label: str | None) -> dict[str, str]:
    """Write one item's files into ``folder``; returns output key -> file name."""
    source, edited = to_pil(result.source_image[0]), to_pil(result.image[0])
    if label is None:
        label = result.meta.get("label")
        label = label[0] if isinstance(label, list) else label
    files = {k: folder / v for k, v in OUTPUTS.items()}
    write_bytes(files["source"], _png(source))
    write_bytes(files["edited"], _png(edited))
    write_bytes(files["comparison"], _png(labelled_row([source, edited], ["source", f"edited: {label or 'target'}"])))
    frames = [to_pil(f[0]) for _, f in result.frames] or [source, edited]
    write_bytes(files["progress"], progress_gif(frames))
    write_bytes(files["gates"], gates_plot(result.layer_weights[0]))
    buf = io.BytesIO()
    torch.save({"w_plus": result.w_plus.clone(), "w_source": result.w_source.clone()}, buf)
    write_bytes(files["w_plus"], buf.getvalue())
    report = result.report()
    report["outputs"] = dict(OUTPUTS)
    write_json(files["report"], report)
    return dict(OUTPUTS)


#: file names inside a mix's output folder
MIX_OUTPUTS = {
    "source": "source.png",
    "sound": "sound.png",
    "text": "text.png",
    "mixed": "mixed.png",
    "comparison": "comparison.png",
    "interpolation": "interpolation.gif",
    "w_plus": "w_plus.pt",
    "report": "report.json",
}


def build_mix_report(mix: MixResult) -> dict[str, Any]:
    """The JSON report of a mix: both edits' reports, the layer assignment, the mixed image's cosines."""
    edits = mix.edits.report()
    per_item = {k: edits.pop(k) for k in ("label", "target", "final_losses", "metrics", "gates",
                                          "layer_weights") if k in edits}
    if isinstance(edits.get("source"), list):  # both edits start from the same source
        edits["source"] = edits["source"][0]
    return {
        **edits,
        "layers": mix.layers,
        "sound_edit": {k: (v[0] if isinstance(v, list) else v) for k, v in per_item.items() if k != "metrics"}
        | {"metrics": {k: v[0] for k, v in per_item.get("metrics", {}).items()}},
        "text_edit": {k: (v[1] if isinstance(v, list) else v) for k, v in per_item.items() if k != "metrics"}
        | {"metrics": {k: v[1] for k, v in per_item.get("metrics", {}).items()}},
        "mixed_metrics": {k: v.item() for k, v in mix.metrics.items()},
        "interpolation_frames": 0 if mix.interpolation is None else mix.interpolation.shape[0],
    }


def save_mix(mix: MixResult, out_dir: str | os.PathLike, *, keep: Collection[str] = ()) -> dict[str, Path]:
    """Write ``source.png``, ``sound.png``, ``text.png``, ``mixed.png``, a labelled ``comparison.png``,
    ``interpolation.gif`` (when frames were rendered), ``w_plus.pt`` (mixed and both guided codes) and
    (last) ``report.json`` into ``out_dir``, as one set that replaces an earlier mix's or edit's files there
    (except ``keep``: see :func:`save_result`)."""
    out = Path(out_dir)
    names = dict(MIX_OUTPUTS)
    if mix.interpolation is None:
        del names["interpolation"]
    with output_set(out, replaces=lambda name: _result_entry(name) and name not in keep) as stage:
        files = {k: stage / v for k, v in names.items()}
        labels = mix.edits.meta.get("label", ["sound", "text"])
        images = [to_pil(mix.source_image[0]), to_pil(mix.edits.image[0]), to_pil(mix.edits.image[1]),
                  to_pil(mix.image[0])]
        for key, img in zip(("source", "sound", "text", "mixed"), images):
            write_bytes(files[key], _png(img))
        spans = ", ".join(f"{n} {min(i for i, x in enumerate(mix.layers) if x == n) + 1}-"
                          f"{max(i for i, x in enumerate(mix.layers) if x == n) + 1}"
                          for n in dict.fromkeys(mix.layers))
        write_bytes(files["comparison"], _png(labelled_row(images, ["source", labels[0], labels[1], f"mixed: {spans}"])))
        if mix.interpolation is not None:
            write_bytes(files["interpolation"], progress_gif([to_pil(f) for f in mix.interpolation]))
        buf = io.BytesIO()
        torch.save({"w_plus": mix.w_plus.clone(), "sound": mix.edits.w_plus[0:1].clone(),
                    "text": mix.edits.w_plus[1:2].clone(), "w_source": mix.edits.w_source[0:1].clone()}, buf)
        write_bytes(files["w_plus"], buf.getvalue())
        report = mix.report()
        report["outputs"] = names
        write_json(files["report"], report)
    return {k: out / v for k, v in names.items()}
