"""Manipulation metrics over a set of (source, sound / text) edits.

For every edit: the CLIP cosine of the edited image to its target and to the
source image; the semantic accuracy of the edited images under a linear
classifier trained on *audio* embeddings of the labels (the paper's 8 labels:
giggling, sobbing, nose-blowing, fire crackling, wind noise, underwater
bubbling, explosion, thunderstorm) and applied to *image* embeddings; the
manipulation directions (cos(w_s, w_a), cos(w_s, w_t) and a t-SNE of
w_a - w_s vs w_t - w_s); identity similarity for faces; and a pixel distance to
the source (a perceptual-metric-free content-preservation figure).

All functions here are pure (tensors in, numbers out); :func:`summarize_edits`
collects them and :func:`write_manipulation_report` writes JSON, Markdown and PNGs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from soundedit.errors import InputError
from soundedit.evaluation.probe import limited_threads

logger = logging.getLogger("soundedit")

#: The labels of the paper's semantic-accuracy study.
PAPER_LABELS = ("giggling", "sobbing", "nose blowing", "fire crackling", "wind noise", "underwater bubbling",
                "explosion", "thunderstorm")


def _flat(w: torch.Tensor) -> torch.Tensor:
    """(N, n_latent, style_dim) W+ codes -> (N, n_latent * style_dim)."""
    if w.ndim != 3:
        raise InputError(f"latent codes: expected (N, n_latent, style_dim), got {tuple(w.shape)}")
    return w.detach().float().cpu().reshape(w.shape[0], -1)


def latent_cosine(w_a: torch.Tensor, w_b: torch.Tensor) -> torch.Tensor:
    """Cosine between two W+ codes per item, over all layers at once: (N,)."""
    if w_a.shape != w_b.shape:
        raise InputError(f"latent codes: shapes differ, {tuple(w_a.shape)} vs {tuple(w_b.shape)}")
    return F.cosine_similarity(_flat(w_a), _flat(w_b), dim=1)


def embedding_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine of two (N, d) embedding batches: (N,)."""
    return F.cosine_similarity(a.detach().float().cpu(), b.detach().float().cpu(), dim=1)


def pixel_distance(source: torch.Tensor, edited: torch.Tensor) -> dict[str, torch.Tensor]:
    """Content preservation without a perceptual network: per-image L1 and RMSE on the [0, 1] scale.

    Args:
        source, edited: (N, 3, H, W) images in about [-1, 1] (clamped first).

    Returns:
        ``{"l1": (N,), "rmse": (N,)}``.
    """
    if source.shape != edited.shape or source.ndim != 4:
        raise InputError(f"images: expected two (N, 3, H, W) batches of one shape, got {tuple(source.shape)} "
                         f"and {tuple(edited.shape)}")
    s = (source.detach().float().cpu().clamp(-1, 1) + 1) / 2
    e = (edited.detach().float().cpu().clamp(-1, 1) + 1) / 2
    diff = (e - s).flatten(1)
    return {"l1": diff.abs().mean(dim=1), "rmse": diff.pow(2).mean(dim=1).sqrt()}


def identity_similarity(identity_net, source: torch.Tensor, edited: torch.Tensor) -> torch.Tensor:
    """ArcFace cosine between source and edited faces, ``R.embed_faces``: (N,)."""
    with torch.no_grad():
        a = identity_net.embed_faces(source.to(next(identity_net.parameters()).device))
        b = identity_net.embed_faces(edited.to(next(identity_net.parameters()).device))
    return embedding_cosine(a, b)


class SemanticClassifier:
    """Linear classifier trained on audio embeddings, applied to image embeddings (same CLIP space).

    Embeddings are L2-normalised before fitting and predicting, since audio and
    image embeddings only share directions, not norms.
    """

    def __init__(self, *, C: float = 1.0, seed: int = 0) -> None:
        self.C, self.seed = C, seed
        self.classes: list[str] = []
        self._model = None

    def fit(self, audio_embeddings, labels: Sequence[str]) -> "SemanticClassifier":
        """Fit on (M, d) audio embeddings with one label each (at least two distinct labels)."""
        from sklearn.linear_model import LogisticRegression

        X = _normalised(audio_embeddings)
        labels = list(labels)
        if X.shape[0] != len(labels):
            raise InputError(f"semantic classifier: {X.shape[0]} embeddings for {len(labels)} labels")
        self.classes = sorted(set(labels))
        if len(self.classes) < 2:
            raise InputError(f"semantic classifier: needs sounds of at least 2 labels, got {self.classes}")
        y = np.asarray([self.classes.index(x) for x in labels])
        with limited_threads(1):  # a small problem: thread start-up would dominate
            self._model = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed).fit(X, y)
        return self

    def predict(self, embeddings) -> list[str]:
        """Label of each (N, d) embedding."""
        if self._model is None:
            raise RuntimeError("SemanticClassifier.predict before fit")
        return [self.classes[i] for i in self._model.predict(_normalised(embeddings))]

    def accuracy(self, image_embeddings, labels: Sequence[str]) -> tuple[float, list[str]]:
        """Fraction of edited images classified as their intended label, and the predictions."""
        unknown = sorted(set(labels) - set(self.classes))
        if unknown:
            raise InputError(f"semantic accuracy: labels {unknown} were not among the classifier's training "
                             f"labels {self.classes}")
        pred = self.predict(image_embeddings)
        return float(np.mean([p == t for p, t in zip(pred, labels)])), pred


def _normalised(x) -> np.ndarray:
    arr = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    return arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)


def tsne_directions(audio_dirs: torch.Tensor, text_dirs: torch.Tensor | None = None, *, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of manipulation directions (w_a - w_s) and, if given, (w_t - w_s).

    Args:
        audio_dirs, text_dirs: (N, n_latent, style_dim) or (N, F) differences.
        seed: t-SNE's random state (results are deterministic per seed).

    Returns:
        (N or 2N, 2) coordinates, audio directions first.
    """
    from sklearn.manifold import TSNE

    parts = [audio_dirs] + ([text_dirs] if text_dirs is not None else [])
    X = torch.cat([p.detach().float().cpu().reshape(p.shape[0], -1) for p in parts]).numpy().astype(np.float64)
    n = X.shape[0]
    if n < 3:
        raise InputError(f"t-SNE: needs at least 3 directions, got {n}")
    if not np.isfinite(X).all() or np.ptp(X, axis=0).max() == 0:
        # identical points (e.g. 0-step edits) have no neighbourhood structure; sklearn divides by 0
        raise InputError(f"t-SNE: the {n} directions are all identical (or not finite); nothing to embed")
    # perplexity must stay below the number of points; ~n/3 for small edit sets, 30 (sklearn's default) at most
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    # exact gradients for edit-set sizes: O(n^2) but single-threaded and fast for n in the hundreds,
    # where Barnes-Hut's OpenMP start-up dominates (and stalls on a busy machine)
    method = "exact" if n <= 1000 else "barnes_hut"
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=500, method=method)
    return tsne.fit_transform(X)


@dataclass
class EditBatch:
    """The tensors of N edits of one kind (sound- or text-guided), as metrics need them.

    Attributes:
        w_source, w_edit: (N, n_latent, style_dim) source and edited codes.
        source_image, image: (N, 3, H, W) in about [-1, 1].
        target: (N, d) unit-norm CLIP target embeddings.
        labels: N semantic labels (the class each edit aims at).
    """

    w_source: torch.Tensor
    w_edit: torch.Tensor
    source_image: torch.Tensor
    image: torch.Tensor
    target: torch.Tensor
    labels: list[str]

    @classmethod
    def from_result(cls, result, labels: Sequence[str]) -> "EditBatch":
        """From a :class:`soundedit.editing.EditResult` (``w_source``, ``w_plus``, images, ``target``)."""
        return cls(w_source=result.w_source, w_edit=result.w_plus, source_image=result.source_image,
                   image=result.image, target=result.target, labels=list(labels))


def summarize_edits(clip_space, audio: EditBatch, text: EditBatch | None = None, *,
                    semantic: SemanticClassifier | None = None, identity_net=None, seed: int = 0) -> dict:
    """Every manipulation metric over N sound-guided (and optionally N text-guided) edits.

    Args:
        clip_space: embeds images (``embed_image``) into the targets' space.
        audio: the sound-guided edits.
        text: the text-guided edits of the same sources and labels, for the direction study.
        semantic: a fitted :class:`SemanticClassifier` (``None``: semantic accuracy is skipped).
        identity_net: an ``IdentityNet`` for faces (``None``: identity similarity is skipped).
        seed: t-SNE seed.

    Returns:
        ``{"per_edit": [...], "summary": {...}, "tsne": (M, 2) list or None, "cos_ws_wa": [...],
        "cos_ws_wt": [...]}`` (all JSON-able).
    """
    n = audio.w_edit.shape[0]
    if text is not None and (text.w_edit.shape != audio.w_edit.shape or text.labels != audio.labels):
        raise InputError("text-guided edits must pair one-to-one with the sound-guided edits (same sources, labels)")
    with torch.no_grad():
        device = clip_space.device
        emb_a = clip_space.embed_image(audio.image.to(device)).cpu()
        emb_src = clip_space.embed_image(audio.source_image.to(device)).cpu()
        emb_t = clip_space.embed_image(text.image.to(device)).cpu() if text is not None else None
    per: dict[str, list] = {
        "label": audio.labels,
        "clip_to_target": embedding_cosine(emb_a, audio.target).tolist(),
        "clip_to_source": embedding_cosine(emb_a, emb_src).tolist(),
        "cos_ws_wa": latent_cosine(audio.w_source, audio.w_edit).tolist(),
    }
    pix = pixel_distance(audio.source_image, audio.image)
    per["pixel_l1"], per["pixel_rmse"] = pix["l1"].tolist(), pix["rmse"].tolist()
    if text is not None:
        per["text_clip_to_target"] = embedding_cosine(emb_t, text.target).tolist()
        per["cos_ws_wt"] = latent_cosine(text.w_source, text.w_edit).tolist()
    if identity_net is not None:
        per["identity"] = identity_similarity(identity_net, audio.source_image, audio.image).tolist()
    summary: dict = {"n_edits": n}
    for key in ("clip_to_target", "clip_to_source", "pixel_l1", "pixel_rmse", "identity", "text_clip_to_target"):
        if key in per:
            summary[key] = _stats(per[key])
    summary["cos_ws_wa"] = _stats(per["cos_ws_wa"], var=True)
    if "cos_ws_wt" in per:
        summary["cos_ws_wt"] = _stats(per["cos_ws_wt"], var=True)
    if semantic is not None:
        acc, pred = semantic.accuracy(emb_a, audio.labels)
        per["semantic_prediction"] = pred
        summary["semantic_accuracy"] = acc
        summary["semantic_classes"] = semantic.classes
        if text is not None:
            summary["text_semantic_accuracy"], per["text_semantic_prediction"] = semantic.accuracy(emb_t, text.labels)
    tsne, tsne_note = None, None
    dirs_t = (text.w_edit - text.w_source) if text is not None else None
    try:
        tsne = tsne_directions(audio.w_edit - audio.w_source, dirs_t, seed=seed).tolist()
    except InputError as exc:  # too few or degenerate directions: report why instead of a plot
        tsne_note = str(exc)
        logger.warning("no t-SNE plot: %s", exc)
    summary["tsne"] = tsne_note or "ok"
    items = [{k: v[i] for k, v in per.items()} for i in range(n)]
    return {"per_edit": items, "summary": summary, "tsne": tsne,
            "cos_ws_wa": per["cos_ws_wa"], "cos_ws_wt": per.get("cos_ws_wt", [])}


def _stats(values: Sequence[float], *, var: bool = False) -> dict:
    arr = np.asarray(values, dtype=np.float64)
    out = {"mean": float(arr.mean()), "std": float(arr.std())}
    if var:
        out["var"] = float(arr.var())
    return out


def write_manipulation_report(out_dir: str | Path, metrics: dict, *, settings: dict | None = None,
                              images: Callable[[Path], None] | None = None) -> dict:
    """Write ``edits.json``, ``edits.md``, the PNGs (direction histograms, t-SNE, CLIP cosines) and, with
    ``images``, the per-job image rows into ``out_dir``, as one set (:func:`soundedit.fileio.output_set`)
    that replaces an earlier run's: a failure on the way leaves ``out_dir`` as it was.

    Args:
        images: writes the image rows into the folder it is given (the set's ``images/``).

    Returns:
        The report ``edits.json`` holds (``kind``, ``created``, ``environment``, ``settings``, the metrics,
        ``plots``, and ``files``: the JSON's and Markdown's paths), so that ``--json`` prints what was written.
    """
    import datetime as _dt

    from soundedit.evaluation import reports
    from soundedit.fileio import output_set, owned_folder

    out = Path(out_dir)
    plots = {"directions_png": "edits_direction_cosines.png", "clip_png": "edits_clip_cosines.png"}
    if metrics["tsne"] is not None:
        plots["tsne_png"] = "edits_tsne.png"
    report = {"kind": "edits", "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "environment": reports.environment(), "settings": settings or {}, **metrics,
              "plots": {k: str(out / v) for k, v in plots.items()},
              "files": {"json": str(out / "edits.json"), "markdown": str(out / "edits.md")}}
    with output_set(out, replaces=reports.output_claims(["edits"]), last="edits.json") as stage:
        series = {"cos(w_s, w_a) sound": metrics["cos_ws_wa"]}
        if metrics["cos_ws_wt"]:
            series["cos(w_s, w_t) text"] = metrics["cos_ws_wt"]
        reports.plot_histograms(series, stage / plots["directions_png"], title="source vs edited latent: cosine")
        reports.plot_histograms(
            {"to target": [e["clip_to_target"] for e in metrics["per_edit"]],
             "to source": [e["clip_to_source"] for e in metrics["per_edit"]]},
            stage / plots["clip_png"], title="CLIP cosine of edited images")
        if metrics["tsne"] is not None:
            n = len(metrics["per_edit"])
            groups = ["w_a - w_s (sound)"] * n + ["w_t - w_s (text)"] * (len(metrics["tsne"]) - n)
            reports.plot_scatter(np.asarray(metrics["tsne"]), groups, stage / plots["tsne_png"],
                                 title="t-SNE of manipulation directions")
        if images is not None:
            images(owned_folder(stage / reports.EDIT_IMAGES))  # marked: a re-run replaces it
        reports.write_report(stage, report, _markdown(metrics), stem="edits")
    return report


def _markdown(metrics: dict) -> str:
    s = metrics["summary"]

    def ms(key: str, digits: int = 3) -> str:
        v = s.get(key)
        return "–" if v is None else f"{v['mean']:.{digits}f} ± {v['std']:.{digits}f}"

    rows = [("CLIP cosine to target (sound edits)", ms("clip_to_target")),
            ("CLIP cosine to source image", ms("clip_to_source")),
            ("CLIP cosine to target (text edits)", ms("text_clip_to_target")),
            ("semantic accuracy (sound edits)", "–" if "semantic_accuracy" not in s else f"{100 * s['semantic_accuracy']:.1f} %"),
            ("semantic accuracy (text edits)", "–" if "text_semantic_accuracy" not in s else f"{100 * s['text_semantic_accuracy']:.1f} %"),
            ("cos(w_s, w_a): mean / var", f"{s['cos_ws_wa']['mean']:.4f} / {s['cos_ws_wa']['var']:.2e}"),
            ("cos(w_s, w_t): mean / var", "–" if "cos_ws_wt" not in s else f"{s['cos_ws_wt']['mean']:.4f} / {s['cos_ws_wt']['var']:.2e}"),
            ("identity similarity (faces)", ms("identity")),
            ("pixel L1 to source ([0,1] scale)", ms("pixel_l1", 4)),
            ("pixel RMSE to source ([0,1] scale)", ms("pixel_rmse", 4)),
            ("t-SNE of directions", "edits_tsne.png" if s.get("tsne") == "ok" else f"not drawn: {s.get('tsne')}")]
    lines = [f"# Manipulation metrics ({s['n_edits']} edits)", "", "| metric | value |", "|:---|---:|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines) + "\n"
