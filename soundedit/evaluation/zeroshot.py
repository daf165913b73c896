"""Zero-shot audio classification in CLIP space.

Each class name is put into one or more prompt templates, embedded with CLIP's
text tower and (for several templates) averaged then re-normalised, CLIP's
prompt ensembling.  A clip is scored by the cosine of its audio embedding to
every class embedding, times CLIP's logit scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from soundedit.errors import InputError
from soundedit.text.templates import DEFAULT_TEMPLATE, SOUND_TEMPLATES, check_template, label_to_prompt
from soundedit.evaluation.metrics import (confusion_matrix, grouped_accuracy, mean_std, per_class_accuracy,
                                          topk_correct, topk_predictions)

#: One prompt per class by default; ``--ensemble`` averages over :data:`ENSEMBLE_TEMPLATES`.
DEFAULT_TEMPLATES: tuple[str, ...] = (DEFAULT_TEMPLATE,)
ENSEMBLE_TEMPLATES: tuple[str, ...] = SOUND_TEMPLATES


def check_templates(templates: Sequence[str]) -> list[str]:
    """Validate prompt templates: each must have one ``{label}`` and no other placeholder (see
    :func:`soundedit.text.templates.check_template`)."""
    out = list(templates)
    if not out:
        raise InputError("--template: expected at least one prompt template such as \"the sound of {label}\"")
    for t in out:
        check_template(t, "--template")
    return out


def class_embeddings(clip_space, classes: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES):
    """Unit-norm text embedding of every class, averaged over templates.

    Args:
        clip_space: a :class:`~soundedit.models.ClipSpace` (``embed_text(texts, templates=...)``).
        classes: cleaned class names.
        templates: prompt templates with one ``{label}``.

    Returns:
        (C, d) float32 tensor, rows unit-norm.
    """
    import torch

    templates = check_templates(templates)
    prompts = [label_to_prompt(c, t) for c in classes for t in templates]
    with torch.no_grad():
        # prompts are complete sentences already: "{}" keeps ClipSpace from wrapping them again
        text = clip_space.embed_text(prompts, templates=("{}",)).float().cpu()
    # (C * T, d) -> (C, T, d): prompts were laid out class-major above
    text = text.reshape(len(classes), len(templates), -1)
    text = torch.nn.functional.normalize(text, dim=-1).mean(dim=1)
    return torch.nn.functional.normalize(text, dim=-1)


def zero_shot_scores(audio_embeddings, text_embeddings, logit_scale: float = 1.0) -> np.ndarray:
    """Logits ``logit_scale * cos(a, t)``: (N, d) x (C, d) -> (N, C) numpy array."""
    a = np.asarray(audio_embeddings, dtype=np.float64)
    t = np.asarray(text_embeddings, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    return float(logit_scale) * a @ t.T


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class ZeroShotResult:
    """Scores of a zero-shot run over labelled clips.

    Attributes:
        top1, top5: accuracy over all clips.
        folds: ``{fold: {"top1", "top5", "n"}}`` (empty without folds).
        fold_mean: ``{"top1": (mean, std), "top5": (mean, std)}`` over folds, the protocol's figure.
        per_class: accuracy (top-1 recall) per class name.
        confusion: (C, C) counts, row = true class.
        predictions: (N,) top-1 class index per clip.
    """

    top1: float
    top5: float
    folds: dict
    fold_mean: dict
    per_class: dict
    confusion: np.ndarray
    predictions: np.ndarray

    def to_dict(self) -> dict:
        return {
            "top1": self.top1,
            "top5": self.top5,
            "fold_mean": {k: {"mean": m, "std": s} for k, (m, s) in self.fold_mean.items()},
            "folds": {str(k): v for k, v in self.folds.items()},
            "per_class": self.per_class,
        }


def evaluate_scores(scores: np.ndarray, targets: Sequence[int], classes: Sequence[str],
                    folds: Sequence[int | None] | None = None) -> ZeroShotResult:
    """Top-1/top-5 accuracy overall and per fold, per-class accuracy and confusion.

    Args:
        scores: (N, C) class scores (any monotone score: logits or probabilities).
        targets: (N,) true class indices.
        classes: the C class names.
        folds: (N,) fold of every clip, or ``None``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    if scores.shape[1] != len(classes):
        raise InputError(f"zero-shot: {scores.shape[1]} score columns for {len(classes)} classes")
    hit1 = topk_correct(scores, targets, 1)
    hit5 = topk_correct(scores, targets, 5)
    fold_table: dict = {}
    fold_mean: dict = {"top1": (float("nan"), float("nan")), "top5": (float("nan"), float("nan"))}
    if folds is not None and any(f is not None for f in folds):
        g1 = grouped_accuracy(hit1, folds)
        g5 = grouped_accuracy(hit5, folds)
        fold_table = {f: {"top1": g1[f]["accuracy"], "top5": g5[f]["accuracy"], "n": g1[f]["n"]} for f in g1}
        fold_mean = {k: mean_std([v[k] for v in fold_table.values()]) for k in ("top1", "top5")}
    predictions = topk_predictions(scores, 1)[:, 0]
    cm = confusion_matrix(predictions, targets, len(classes))
    recall = per_class_accuracy(cm)
    return ZeroShotResult(
        top1=float(hit1.mean()) if hit1.size else float("nan"),
        top5=float(hit5.mean()) if hit5.size else float("nan"),
        folds=fold_table,
        fold_mean=fold_mean,
        per_class={c: (None if np.isnan(r) else float(r)) for c, r in zip(classes, recall)},
        confusion=cm,
        predictions=predictions,
    )
