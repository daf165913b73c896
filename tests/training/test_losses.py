"""InfoNCE against a hand-computed example; the loss module's terms and logit scale."""

from __future__ import annotations

import math

import pytest
import torch

from soundedit.training.losses import AlignmentLoss, info_nce


def test_info_nce_hand_computed():
    # 2 pairs in 2-D: x = e1, e2; y = e1, (e1 + e2)/sqrt2; scale 2.
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    r = 1 / math.sqrt(2)
    y = torch.tensor([[1.0, 0.0], [r, r]])
    s = 2.0
    # similarities S = x y^T = [[1, r], [0, r]]
    # x->y rows: l_0 = -log(e^{2}/(e^{2}+e^{2r})), l_1 = -log(e^{2r}/(e^{0}+e^{2r}))
    l_xy = (-math.log(math.exp(2) / (math.exp(2) + math.exp(2 * r))) - math.log(math.exp(2 * r) / (1 + math.exp(2 * r)))) / 2
    # y->x rows use columns of S: col 0 = [1, 0], col 1 = [r, r]
    l_yx = (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(math.exp(2 * r) / (math.exp(2 * r) + math.exp(2 * r)))) / 2
    got = info_nce(x, y, s)
    assert got.item() == pytest.approx(l_xy + l_yx, rel=1e-6)
    assert got.item() == pytest.approx(0.74012, abs=1e-4)  # the number itself, as a second check


def test_info_nce_groups_share_targets():
    x = torch.nn.functional.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    y = x.clone()
    # all ids distinct: exactly the plain loss
    assert info_nce(x, y, 10.0, groups=torch.arange(4)).item() == pytest.approx(info_nce(x, y, 10.0).item(), rel=1e-6)
    # rows 0 and 1 share a text (group 7): each is a positive of the other, target mass split evenly
    g = torch.tensor([7, 7, 1, 2])
    z = torch.nn.functional.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    s = 3.0
    logits = s * x @ z.t()
    expect = 0.0
    for mat in (logits, logits.t()):
        logp = mat.log_softmax(dim=1)
        for i in range(4):
            pos = [j for j in range(4) if g[j] == g[i]]
            expect += -sum(logp[i, j].item() for j in pos) / len(pos) / 4
    assert info_nce(x, z, s, groups=g).item() == pytest.approx(expect, rel=1e-6)
    assert info_nce(x, z, s, groups=g).item() != pytest.approx(info_nce(x, z, s).item(), rel=1e-3)


def test_alignment_loss_terms_and_scale():
    gen = torch.Generator().manual_seed(1)
    a, t, v, aa = (torch.randn(6, 16, generator=gen) for _ in range(4))
    fn = AlignmentLoss(weight_text=1.0, weight_image=0.5, weight_augment=2.0)
    assert fn.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-6)  # CLIP's, not exp(0.07)
    total, terms = fn(a, text=t, image=v, audio_aug=aa, gather=False)
    n = torch.nn.functional.normalize
    s = 1 / 0.07
    expect = {"text": info_nce(n(a, dim=-1), n(t, dim=-1), s), "image": info_nce(n(a, dim=-1), n(v, dim=-1), s),
              "augment": info_nce(n(a, dim=-1), n(aa, dim=-1), s)}
    assert set(terms) == set(expect)
    for k in expect:
        assert terms[k] == pytest.approx(expect[k].item(), rel=1e-5)
    assert total.item() == pytest.approx(expect["text"].item() + 0.5 * expect["image"].item() + 2 * expect["augment"].item(), rel=1e-5)
    # only the present modalities count
    _, only_text = fn(a, text=t, gather=False)
    assert set(only_text) == {"text"}
    with pytest.raises(ValueError, match="no term"):
        fn(a, gather=False)


def test_logit_scale_learnable_clamped_or_fixed():
    learn = AlignmentLoss(logit_scale=50.0, max_logit_scale=100.0)
    assert [n for n, _ in learn.named_parameters()] == ["log_logit_scale"]
    with torch.no_grad():
        learn.log_logit_scale.fill_(math.log(1000.0))
    assert learn.logit_scale.item() == pytest.approx(100.0)
    fixed = AlignmentLoss(learnable=False)
    assert list(fixed.parameters()) == [] and "log_logit_scale" in fixed.state_dict()
    with pytest.raises(ValueError, match="logit_scale"):
        AlignmentLoss(logit_scale=200.0)
