"""Evaluation: zero-shot classification, linear probe, manipulation metrics, reports.

Entry points (loaded on first attribute access, so importing this package is cheap):

* datasets — :func:`load_dataset` (ESC-50 / UrbanSound8K / folder-per-class layouts),
  :class:`AudioDataset`, :class:`Clip`;
* embeddings — :func:`embed_files` with an on-disk cache keyed by file content and encoder;
* zero-shot — :func:`class_embeddings`, :func:`zero_shot_scores`, :func:`evaluate_scores`;
* linear probe — :func:`linear_probe` (official folds, C by inner CV on training folds);
* manipulation — :func:`summarize_edits`, :class:`SemanticClassifier`, :class:`EditBatch`;
* runs — :data:`PROTOCOLS` (registry: ``zeroshot``, ``probe``, ``edits``), :func:`run_zero_shot`,
  :func:`run_probe`, :func:`run_edits`, :func:`write_reports` and :func:`write_table1` (JSON + Markdown +
  PNGs, each command's files written as one set).
"""

from __future__ import annotations

from soundedit._lazy import lazy_getattr

_LAZY = {
    "AudioDataset": "soundedit.evaluation.datasets",
    "Clip": "soundedit.evaluation.datasets",
    "load_dataset": "soundedit.evaluation.datasets",
    "embed_files": "soundedit.evaluation.embeddings",
    "encoder_fingerprint": "soundedit.evaluation.embeddings",
    "topk_accuracy": "soundedit.evaluation.metrics",
    "confusion_matrix": "soundedit.evaluation.metrics",
    "class_embeddings": "soundedit.evaluation.zeroshot",
    "zero_shot_scores": "soundedit.evaluation.zeroshot",
    "evaluate_scores": "soundedit.evaluation.zeroshot",
    "linear_probe": "soundedit.evaluation.probe",
    "ProbeResult": "soundedit.evaluation.probe",
    "summarize_edits": "soundedit.evaluation.manipulation",
    "write_manipulation_report": "soundedit.evaluation.manipulation",
    "SemanticClassifier": "soundedit.evaluation.manipulation",
    "EditBatch": "soundedit.evaluation.manipulation",
    "PAPER_LABELS": "soundedit.evaluation.manipulation",
    "NamedEncoder": "soundedit.evaluation.runs",
    "run_zero_shot": "soundedit.evaluation.runs",
    "run_probe": "soundedit.evaluation.runs",
    "write_reports": "soundedit.evaluation.runs",
    "write_table1": "soundedit.evaluation.runs",
    "run_edits": "soundedit.evaluation.runs",
    "read_jobs": "soundedit.evaluation.runs",
    "PROTOCOLS": "soundedit.evaluation.runs",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr("soundedit.evaluation", _LAZY)
