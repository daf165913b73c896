"""Linear probe: logistic regression on frozen embeddings with the official folds as CV.

For each official test fold the regularisation strength C is chosen by an inner
cross-validation over the *training* folds only (leave-one-training-fold-out);
the scaler and classifier are then refitted on all training folds and scored on
the test fold once.  The test fold is never seen before that final score, so the
reported accuracy is free of selection leakage.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from soundedit.errors import InputError
from soundedit.evaluation.metrics import confusion_matrix, mean_std

#: Default grid for C (inverse regularisation strength), log-spaced.
DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def default_classifier(C: float, *, seed: int = 0):
    """Standardise features, then multinomial logistic regression (lbfgs)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))


@dataclass
class ProbeResult:
    """Outcome of :func:`linear_probe`.

    Attributes:
        fold_accuracy: test accuracy per outer fold (fold value -> accuracy).
        chosen_C: C picked by the inner CV of each outer fold.
        inner_scores: per outer fold, the inner-CV mean accuracy of every C tried.
        mean, std: over the outer folds.
        confusion: (C, C) counts over all test predictions (row = true class).
        predictions: (N,) predicted class of every clip when it was in the test fold.
        protocol: ``"official-folds"`` or ``"stratified-k"`` (when fewer than 2 folds were given).
        fold_n: test clips per outer fold.
    """

    fold_accuracy: dict
    chosen_C: dict
    inner_scores: dict
    mean: float
    std: float
    confusion: np.ndarray
    predictions: np.ndarray
    protocol: str
    folds: list = field(default_factory=list)
    fold_n: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "mean": self.mean,
            "std": self.std,
            "folds": {str(k): v for k, v in self.fold_accuracy.items()},
            "fold_n": {str(k): v for k, v in self.fold_n.items()},
            "chosen_C": {str(k): v for k, v in self.chosen_C.items()},
            "inner_cv": {str(k): {repr(c): s for c, s in v.items()} for k, v in self.inner_scores.items()},
        }


def pseudo_folds(targets: np.ndarray, n_splits: int = 5, *, seed: int = 0) -> np.ndarray:
    """Stratified fold ids (1..n_splits) for data without official folds."""
    from sklearn.model_selection import StratifiedKFold

    targets = np.asarray(targets)
    counts = np.bincount(targets)
    n_splits = int(min(n_splits, counts[counts > 0].min()))
    if n_splits < 3:  # nested CV: C is chosen on the training folds of each outer split
        raise InputError(f"linear probe: without official folds every class needs at least 3 clips to build "
                         f"cross-validation folds, got {n_splits} in its smallest class (more clips: a larger "
                         "--limit, or more folds)")
    folds = np.zeros(len(targets), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for i, (_, test) in enumerate(splitter.split(np.zeros(len(targets)), targets), start=1):
        folds[test] = i
    return folds


def linear_probe(
    embeddings: np.ndarray,
    targets: np.ndarray,
    folds: Sequence[int] | None,
    *,
    n_classes: int | None = None,
    Cs: Sequence[float] = DEFAULT_CS,
    make_classifier: Callable[[float], object] | None = None,
    seed: int = 0,
    threads: int | None = 1,
) -> ProbeResult:
    """Cross-validated logistic-regression accuracy of frozen embeddings.

    Args:
        embeddings: (N, D) features (not modified).
        targets: (N,) class indices.
        folds: (N,) official fold of every row; with fewer than two distinct
            folds (or ``None``) stratified pseudo-folds are built instead and the
            result's ``protocol`` says so.
        n_classes: size of the confusion matrix (default: max target + 1).
        Cs: candidate C values; the inner CV picks one per outer fold (ties -> smaller C).
        make_classifier: ``C -> estimator`` with ``fit``/``predict`` (default
            :func:`default_classifier`); a fresh one is made for every fit.
        seed: seed of the classifier and of pseudo-folds.
        threads: BLAS/OpenMP threads during the fits (``None``: the libraries' default). One is
            the default because the many small fits of a nested CV are dominated by thread
            start-up and stall badly on a busy machine.

    Returns:
        :class:`ProbeResult`.
    """
    X = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(targets, dtype=np.int64)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise InputError(f"linear probe: expected embeddings (N, D) and targets (N,), got {X.shape} and {y.shape}")
    if not Cs:
        raise InputError("linear probe: expected at least one C value")
    n_classes = int(n_classes if n_classes is not None else y.max() + 1)
    factory = make_classifier or (lambda C: default_classifier(C, seed=seed))
    fold_ids = None if folds is None else np.asarray(folds)
    protocol = "official-folds"
    if fold_ids is None or len(set(fold_ids.tolist())) < 2:
        fold_ids = pseudo_folds(y, seed=seed)
        protocol = f"stratified-{len(set(fold_ids.tolist()))}"
    unique = sorted(set(fold_ids.tolist()))
    if len(unique) < 3:  # official folds (pseudo-folds have 3 or more)
        raise InputError(f"linear probe: need at least 3 folds for nested CV (C chosen on training folds), "
                         f"got folds {unique}")

    with limited_threads(threads), warnings.catch_warnings():
        # few clips per class (e.g. one ESC-50 fold) make sklearn guess "regression?"; the targets are classes
        warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
        return _nested_cv(X, y, fold_ids, unique, Cs, factory, n_classes, protocol)


def limited_threads(threads: int | None):
    """Context manager capping BLAS/OpenMP thread pools (no-op for ``None``)."""
    import contextlib

    from threadpoolctl import threadpool_limits

    return contextlib.nullcontext() if threads is None else threadpool_limits(limits=threads)


def _nested_cv(X, y, fold_ids, unique, Cs, factory, n_classes: int, protocol: str) -> ProbeResult:
    predictions = np.full(len(y), -1, dtype=np.int64)
    fold_acc, chosen, inner = {}, {}, {}
    for test_fold in unique:
        train = fold_ids != test_fold
        best_C, scores = _select_C(X[train], y[train], fold_ids[train], Cs, factory)
        model = factory(best_C)
        model.fit(X[train], y[train])
        test = ~train
        predictions[test] = np.asarray(model.predict(X[test]))
        fold_acc[test_fold] = float((predictions[test] == y[test]).mean())
        chosen[test_fold], inner[test_fold] = best_C, scores
    mean, std = mean_std(list(fold_acc.values()))
    return ProbeResult(fold_accuracy=fold_acc, chosen_C=chosen, inner_scores=inner, mean=mean, std=std,
                       confusion=confusion_matrix(predictions, y, n_classes), predictions=predictions,
                       protocol=protocol, folds=unique,
                       fold_n={f: int((fold_ids == f).sum()) for f in unique})


def _select_C(X: np.ndarray, y: np.ndarray, folds: np.ndarray, Cs: Sequence[float], factory) -> tuple[float, dict]:
    """Pick C by leave-one-fold-out over the given (training) rows only."""
    inner_folds = sorted(set(folds.tolist()))
    scores = {}
    for C in Cs:
        accs = []
        for f in inner_folds:
            fit, val = folds != f, folds == f
            model = factory(C)
            model.fit(X[fit], y[fit])
            accs.append(float((np.asarray(model.predict(X[val])) == y[val]).mean()))
        scores[float(C)] = float(np.mean(accs))
    best = max(scores.values())
    return min(c for c, s in scores.items() if s == best), scores
