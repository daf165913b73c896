"""Classification metrics: top-k accuracy, confusion matrices, per-group accuracy.

Pure NumPy over score matrices and integer targets so that zero-shot
classification and the linear probe are scored by the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from soundedit.errors import InputError


def _check(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    if scores.ndim != 2 or targets.ndim != 1 or scores.shape[0] != targets.shape[0]:
        raise InputError(f"scores (N, C) and targets (N,) expected, got {scores.shape} and {targets.shape}")
    if targets.size and (targets.min() < 0 or targets.max() >= scores.shape[1]):
        raise InputError(f"targets must lie in 0..{scores.shape[1] - 1}, got {targets.min()}..{targets.max()}")
    return scores, targets


def topk_predictions(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores per row, best first: (N, C) -> (N, min(k, C)).

    Ties are broken toward the lower class index (stable sort), so results are deterministic.
    """
    scores = np.asarray(scores, dtype=np.float64)
    k = min(k, scores.shape[1])
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def topk_correct(scores: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """Whether each row's target is among its ``k`` best classes: (N,) bool."""
    scores, targets = _check(scores, targets)
    return (topk_predictions(scores, k) == targets[:, None]).any(axis=1)


def topk_accuracy(scores: np.ndarray, targets: np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose target is among the ``k`` best classes (nan for no rows)."""
    hits = topk_correct(scores, targets, k)
    return float(hits.mean()) if hits.size else float("nan")


def confusion_matrix(predictions: np.ndarray, targets: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) counts; row = true class, column = predicted class."""
    predictions = np.asarray(predictions, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (targets, predictions), 1)
    return cm


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix (nan for classes with no examples)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)


def grouped_accuracy(correct: np.ndarray, groups: Sequence) -> dict:
    """Accuracy per group value (e.g. per fold): ``{group: {"accuracy", "n"}}``, groups sorted."""
    correct = np.asarray(correct, dtype=bool)
    groups = np.asarray(groups, dtype=object)
    out = {}
    for g in sorted(set(groups.tolist()), key=lambda v: (v is None, v)):
        mask = groups == g
        out[g] = {"accuracy": float(correct[mask].mean()), "n": int(mask.sum())}
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (std 0 for one value, nan for none)."""
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std())
