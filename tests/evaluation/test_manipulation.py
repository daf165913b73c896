"""Manipulation metrics as pure functions over tensors (known values, degenerate cases)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soundedit.errors import InputError
from soundedit.evaluation.manipulation import (SemanticClassifier, latent_cosine, pixel_distance, tsne_directions)


def test_pixel_distance_known_values():
    src = torch.full((2, 3, 4, 4), -1.0)
    edit = src.clone()
    edit[1] = 1.0  # black -> white: distance 1 on the [0, 1] scale
    edit[0, :, :2] = 0.0  # half the pixels move by 0.5
    d = pixel_distance(src, edit)
    torch.testing.assert_close(d["l1"], torch.tensor([0.25, 1.0]))
    torch.testing.assert_close(d["rmse"], torch.tensor([np.sqrt(0.125), 1.0], dtype=torch.float32))
    with pytest.raises(InputError, match="one shape"):
        pixel_distance(src, edit[:, :, :2])


def test_latent_cosine_over_all_layers():
    w_s = torch.zeros(2, 3, 4)
    w_s[:, :, 0] = 1.0
    w_a = w_s.clone()
    w_a[1] = -w_s[1]  # opposite code
    w_a[0, 0] = torch.tensor([0.0, 1.0, 0.0, 0.0])  # one of three layers turned by 90 degrees
    torch.testing.assert_close(latent_cosine(w_s, w_a), torch.tensor([2 / 3, -1.0]))
    with pytest.raises(InputError, match="n_latent"):
        latent_cosine(w_s[0], w_a[0])


def test_semantic_classifier_transfers_across_modalities():
    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(3, 32, generator=g), dim=1)
    labels = ["fire", "rain", "wind"]
    audio = torch.cat([c + 0.1 * torch.randn(5, 32, generator=g) for c in centres])
    clf = SemanticClassifier().fit(audio, [lbl for lbl in labels for _ in range(5)])
    # "image" embeddings: same directions, different norm and noise
    images = 3.0 * (centres + 0.1 * torch.randn(3, 32, generator=g))
    acc, pred = clf.accuracy(images, labels)
    assert acc == 1.0 and pred == labels
    acc, _ = clf.accuracy(images, ["rain", "wind", "fire"])
    assert acc == 0.0
    with pytest.raises(InputError, match="not among"):
        clf.accuracy(images[:1], ["explosion"])


def test_tsne_directions_shapes_and_degenerate_input():
    g = torch.Generator().manual_seed(0)
    d_a = torch.randn(4, 3, 8, generator=g)
    d_t = torch.randn(4, 3, 8, generator=g) + 5
    pts = tsne_directions(d_a, d_t, seed=0)
    assert pts.shape == (8, 2) and np.isfinite(pts).all()
    np.testing.assert_allclose(pts, tsne_directions(d_a, d_t, seed=0))  # deterministic per seed
    with pytest.raises(InputError, match="identical"):
        tsne_directions(torch.zeros(4, 3, 8), torch.zeros(4, 3, 8))
