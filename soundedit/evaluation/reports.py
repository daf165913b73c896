"""Reports: JSON with every number and setting, Markdown tables in the paper's format, PNG plots.

Plots use matplotlib's Agg canvas directly (no pyplot global state, no display
needed) and are written atomically like every other output.
"""

from __future__ import annotations

import io
import math
import platform
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from soundedit.fileio import write_bytes, write_json, write_text

#: Dataset names as the paper's Table 1 prints them.
DATASET_TITLES = {"esc50": "ESC-50", "urbansound8k": "UrbanSound8K"}


def environment() -> dict:
    """Versions of everything that can change a number in a report."""
    import sklearn
    import torch

    import soundedit

    return {"soundedit": soundedit.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "scikit-learn": sklearn.__version__, "platform": platform.platform()}


def fmt_pct(mean: float | None, std: float | None = None) -> str:
    """``57.8 ± 1.2`` (percent), ``–`` for missing values."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{100 * mean:.1f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" ± {100 * std:.1f}"
    return text


def table1_markdown(rows: Sequence[Mapping]) -> str:
    """The paper's Table 1: one row per encoder, supervised (linear probe) and zero-shot columns.

    Args:
        rows: ``{"encoder": str, "probe": {dataset: (mean, std)}, "zeroshot": {dataset: (mean, std)}}``;
            datasets are ``"esc50"`` / ``"urbansound8k"`` (or any other name, which gets its own column).

    Returns:
        A Markdown table (top-1 accuracy in percent, mean ± std over the folds).
    """
    datasets = list(DATASET_TITLES)
    for row in rows:
        for part in ("probe", "zeroshot"):
            for ds in row.get(part, {}):
                if ds not in datasets:
                    datasets.append(ds)
    titles = [DATASET_TITLES.get(d, d) for d in datasets]
    head = ["Model"] + [f"Supervised {t}" for t in titles] + [f"Zero-shot {t}" for t in titles]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":---"] + [":---:"] * (len(head) - 1)) + "|"]
    for row in rows:
        cells = [str(row["encoder"])]
        for part in ("probe", "zeroshot"):
            for ds in datasets:
                cells.append(fmt_pct(*row.get(part, {}).get(ds, (None, None))))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def folds_markdown(title: str, folds: Mapping, *, keys: Sequence[str] = ("top1", "top5")) -> str:
    """A per-fold table (fold, n, and the given accuracy keys in percent)."""
    head = ["fold", "n"] + list(keys)
    lines = [f"#### {title}", "", "| " + " | ".join(head) + " |", "|" + "|".join([":---:"] * len(head)) + "|"]
    for fold, v in folds.items():
        lines.append("| " + " | ".join([str(fold), str(v.get("n", ""))] + [fmt_pct(v.get(k)) for k in keys]) + " |")
    return "\n".join(lines) + "\n"


#: the folder of ``eval edits``' per-job image rows, and the name of each (``edit_0000_thunderstorm.png``)
EDIT_IMAGES = "images"
_EDIT_IMAGE = re.compile(r"edit_\d{4,}_[A-Za-z0-9-]+\.png")


def output_claims(parts: Sequence[str]) -> Callable[[str], bool]:
    """The entries of an output folder that an earlier run of these report parts (``zeroshot``, ``probe``,
    ``table1``, ``edits``) wrote: ``PART.json``, ``PART.md``, its ``PART_*.png`` plots and, for ``edits``,
    the image rows folder. A new run's set replaces them all (:func:`soundedit.fileio.output_set`), so a
    folder never shows one run's report beside plots of another run's encoders or jobs."""
    def claims(name: str) -> bool:
        if any(name in (f"{part}.json", f"{part}.md") or (name.startswith(f"{part}_") and name.endswith(".png"))
               for part in parts):
            return True
        return "edits" in parts and (name == EDIT_IMAGES or _EDIT_IMAGE.fullmatch(name) is not None)

    return claims


def check_out(out_dir: str | Path, parts: Sequence[str], what: str = "--out") -> None:
    """Refuse, before any work, an output folder that cannot take these report parts: not a writable
    folder, or a folder of the user's where a report file (``PART.json``, ``PART.md``) or ``eval edits``'
    ``images/`` goes. The plots' names depend on the encoders and datasets: the set itself checks those
    before anything moves."""
    from soundedit.fileio import check_folder, check_set_entries

    check_folder(out_dir, what, writable=True)
    names = [f"{part}.{ext}" for part in parts for ext in ("json", "md")]
    if "edits" in parts:
        _adopt_unmarked_images(Path(out_dir))
    check_set_entries(out_dir, [*names, *([EDIT_IMAGES] if "edits" in parts else [])],
                      replaces=output_claims(parts), last=f"{parts[-1]}.json", what=what)


def _adopt_unmarked_images(out: Path) -> None:
    """Mark as ``eval edits``' own an ``images/`` folder that an earlier version wrote before folders were
    marked (:func:`soundedit.fileio.owned_folder`): beside that run's ``edits.json``, holding only image
    rows (``edit_0000_label.png``) and hidden files. Anything else there stays the user's, refused as a clash."""
    from soundedit.fileio import OWNED_MARKER, holds_only

    images = out / EDIT_IMAGES
    if not (out / "edits.json").is_file() or not images.is_dir() or images.is_symlink():
        return
    if holds_only(images, lambda name: _EDIT_IMAGE.fullmatch(name) is not None):
        (images / OWNED_MARKER).touch()


def write_report(out_dir: str | Path, report: Mapping, markdown: str, *, stem: str = "report") -> dict[str, Path]:
    """Write ``{stem}.json`` and ``{stem}.md`` into ``out_dir``; returns name -> path."""
    out = Path(out_dir)
    return {"json": write_json(out / f"{stem}.json", dict(report)), "markdown": write_text(out / f"{stem}.md", markdown)}


def new_figure(width: float, height: float):
    """A matplotlib Figure on its own Agg canvas: no pyplot, no global backend switch (safe in servers)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return write_bytes(path, buf.getvalue())


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], path: str | Path, *, title: str = "") -> Path:
    """Row-normalised confusion matrix as a heat map (rows = true class)."""
    cm = np.asarray(confusion, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    size = max(4.0, 0.22 * n + 2)
    fig = new_figure(size + 1, size)
    ax = fig.add_subplot()
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(n), classes, rotation=90, fontsize=7 if n > 12 else 9)
    ax.set_yticks(range(n), classes, fontsize=7 if n > 12 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_per_class(accuracy: Mapping[str, float | None], path: str | Path, *, title: str = "") -> Path:
    """Horizontal bars of per-class accuracy, sorted best first."""
    items = sorted(((k, v) for k, v in accuracy.items() if v is not None), key=lambda kv: -kv[1])
    fig = new_figure(6, max(2.5, 0.2 * len(items) + 1))
    ax = fig.add_subplot()
    ax.barh(range(len(items)), [100 * v for _, v in items], color="tab:blue")
    ax.set_yticks(range(len(items)), [k for k, _ in items], fontsize=7 if len(items) > 12 else 9)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("accuracy (%)")
    ax.set_title(title or "per-class accuracy")
    return _save(fig, path)


def plot_histograms(series: Mapping[str, Sequence[float]], path: str | Path, *, title: str = "",
                    xlabel: str = "cosine similarity") -> Path:
    """Overlaid histograms of several value series (e.g. cos(w_s, w_a) vs cos(w_s, w_t))."""
    fig = new_figure(6, 4)
    ax = fig.add_subplot()
    finite = [np.asarray(v, dtype=np.float64) for v in series.values() if len(v)]
    lo = min((v.min() for v in finite), default=0.0)
    hi = max((v.max() for v in finite), default=1.0)
    bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 21)
    for name, values in series.items():
        if len(values):
            ax.hist(np.asarray(values, dtype=np.float64), bins=bins, alpha=0.55, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend()
    ax.set_title(title)
    return _save(fig, path)


def plot_scatter(points: np.ndarray, groups: Sequence[str], path: str | Path, *, title: str = "") -> Path:
    """2-D scatter coloured by group (used for the t-SNE of manipulation directions)."""
    pts = np.asarray(points, dtype=np.float64)
    groups = list(groups)
    fig = new_figure(5.5, 5)
    ax = fig.add_subplot()
    for name in dict.fromkeys(groups):
        mask = np.array([g == name for g in groups])
        ax.scatter(pts[mask, 0], pts[mask, 1], s=18, alpha=0.8, label=name)
    ax.legend()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return _save(fig, path)
