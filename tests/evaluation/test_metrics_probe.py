"""Accuracy, confusion, zero-shot scoring and the nested-CV linear probe (incl. a leakage spy)."""

from __future__ import annotations

import numpy as np
import pytest

from soundedit.evaluation.metrics import confusion_matrix, per_class_accuracy, topk_accuracy, topk_predictions
from soundedit.evaluation.probe import default_classifier, linear_probe
from soundedit.evaluation.zeroshot import evaluate_scores, zero_shot_scores


def test_accuracy_on_hand_built_case():
    # 4 clips, 3 classes; true classes 0, 1, 2, 2
    scores = np.array([[0.9, 0.05, 0.05],   # top1 0 (right)
                       [0.6, 0.3, 0.1],     # top1 0 (wrong), top2 has 1
                       [0.2, 0.7, 0.1],     # top1 1 (wrong), class 2 last
                       [0.1, 0.2, 0.7]])    # right
    targets = np.array([0, 1, 2, 2])
    assert topk_accuracy(scores, targets, 1) == pytest.approx(0.5)
    assert topk_accuracy(scores, targets, 2) == pytest.approx(0.75)
    assert topk_accuracy(scores, targets, 3) == pytest.approx(1.0)
    assert topk_predictions(np.array([[1.0, 1.0, 0.0]]), 2).tolist() == [[0, 1]]  # ties -> lower index
    cm = confusion_matrix(scores.argmax(1), targets, 3)
    assert cm.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]
    np.testing.assert_allclose(per_class_accuracy(cm), [1.0, 0.0, 0.5])

    result = evaluate_scores(scores, targets, ["a", "b", "c"], folds=[1, 1, 2, 2])
    assert result.top1 == pytest.approx(0.5) and result.top5 == pytest.approx(1.0)
    assert result.folds[1]["top1"] == pytest.approx(0.5) and result.folds[2]["top1"] == pytest.approx(0.5)
    assert result.fold_mean["top1"] == pytest.approx((0.5, 0.0))
    assert result.per_class == {"a": 1.0, "b": 0.0, "c": 0.5}


def test_zero_shot_scores_are_scaled_cosines():
    a = np.array([[3.0, 0.0], [0.0, -2.0]])
    t = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    s = zero_shot_scores(a, t, logit_scale=100.0)
    np.testing.assert_allclose(s, [[100, 0, 100 / np.sqrt(2)], [0, -100, -100 / np.sqrt(2)]], atol=1e-9)


def _blobs(n_per_class=12, n_classes=4, dim=8, folds=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 6
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = centres[y] + rng.normal(size=(len(y), dim))
    f = np.tile(np.arange(1, folds + 1), len(y) // folds)
    return X, y, f


def test_probe_separable_and_shuffled():
    X, y, f = _blobs()
    res = linear_probe(X, y, f, Cs=(0.1, 1.0))
    assert res.protocol == "official-folds" and res.folds == [1, 2, 3, 4]
    assert res.mean == pytest.approx(1.0) and res.confusion.trace() == len(y)
    shuffled = np.random.default_rng(1).permutation(y)
    chance = linear_probe(X, shuffled, f, Cs=(0.1, 1.0))
    assert chance.mean < 0.5  # 4 classes: chance 0.25, far from the separable 1.0
    no_folds = linear_probe(X, y, None, Cs=(1.0,))
    assert no_folds.protocol.startswith("stratified-") and no_folds.mean == pytest.approx(1.0)


class _Spy:
    """Wraps the default classifier and logs which rows every fit / predict saw."""

    def __init__(self, C, X, log):
        self.inner = default_classifier(C)
        self.index = {row.tobytes(): i for i, row in enumerate(X)}
        self.log = log

    def _rows(self, X):
        return frozenset(self.index[row.tobytes()] for row in np.asarray(X, dtype=np.float64))

    def fit(self, X, y):
        self.log.append(("fit", self._rows(X)))
        self.inner.fit(X, y)
        return self

    def predict(self, X):
        self.log.append(("predict", self._rows(X)))
        return self.inner.predict(X)


def test_probe_never_lets_the_test_fold_into_model_selection():
    X, y, f = _blobs(folds=4)
    Cs = (0.01, 1.0, 100.0)
    log: list = []
    linear_probe(X, y, f, Cs=Cs, make_classifier=lambda C: _Spy(C, X, log))
    fold_rows = {k: frozenset(np.flatnonzero(f == k).tolist()) for k in (1, 2, 3, 4)}
    per_outer = len(Cs) * 3 * 2 + 2  # inner: |Cs| x 3 inner folds x (fit + predict); then final fit + predict
    assert len(log) == 4 * per_outer
    for n, test_fold in enumerate((1, 2, 3, 4)):
        events = log[n * per_outer:(n + 1) * per_outer]
        *selection, (final_fit, final_rows), (final_pred, pred_rows) = events
        # model selection (C) touched training folds only
        for _, rows in selection:
            assert not rows & fold_rows[test_fold], f"fold {test_fold} leaked into C selection"
        assert final_fit == "fit" and final_rows == frozenset(range(len(y))) - fold_rows[test_fold]
        assert final_pred == "predict" and pred_rows == fold_rows[test_fold]


def test_probe_says_what_is_too_small_for_its_folds():
    """Two clips per class without official folds built 2 pseudo-folds, then failed on "need at least 3
    folds, got [1, 2]": fold ids the user never gave."""
    from soundedit.errors import InputError

    X = np.random.default_rng(0).standard_normal((8, 4))
    y = np.repeat(np.arange(4), 2)  # 2 clips per class
    with pytest.raises(InputError, match=r"every class needs at least 3 clips .* got 2 in its smallest class"):
        linear_probe(X, y, folds=None)
    with pytest.raises(InputError, match=r"need at least 3 folds .*got folds \[1, 2\]"):
        linear_probe(X, y, folds=[1, 2] * 4)  # official folds: the user's own ids


def test_probe_counts_test_clips_per_fold():
    X = np.random.default_rng(1).standard_normal((30, 4))
    y = np.repeat(np.arange(3), 10)
    res = linear_probe(X, y, folds=None, Cs=(1.0,))
    assert res.protocol == "stratified-5" and sum(res.fold_n.values()) == 30 and set(res.fold_n) == set(res.folds)
    assert res.to_dict()["fold_n"] == {str(k): v for k, v in res.fold_n.items()}
