"""IR-SE50 identity net: golden parity with TreB1eN's Backbone, crop convention, seeded writers."""

from __future__ import annotations

import pytest
import torch

from soundedit.errors import CheckpointError, InputError
from soundedit.models import load_identity_net
from soundedit.testing.generators import write_seeded_identity_net

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def golden_r(seeded_checkpoint, tmp_path_factory):
    path, expected = seeded_checkpoint("irse50", tmp_path_factory.mktemp("irse") / "model_ir_se50.pth")
    return load_identity_net(path), expected


def test_backbone_112(golden_r):
    R, exp = golden_r
    assert R.units == (3, 4, 14, 3) and R.widths == (64, 128, 256, 512)
    with torch.no_grad():
        emb = R(exp["input_112"])
    torch.testing.assert_close(emb, exp["embedding_112"], **TOL)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(len(emb)), **TOL)


def test_embed_faces_256_and_512(golden_r):
    R, exp = golden_r
    with torch.no_grad():
        torch.testing.assert_close(R.embed_faces(exp["input_256"]), exp["embedding_256_via_crop"], **TOL)
        torch.testing.assert_close(R.embed_faces(exp["input_512"]), exp["embedding_512_via_crop"], **TOL)


def test_gradients_reach_image(tmp_path):
    R = load_identity_net(write_seeded_identity_net(tmp_path / "tiny.pth", seed=0, tiny=True))
    img = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    target = torch.nn.functional.normalize(torch.ones(1, 512), dim=1)
    (1 - (R.embed_faces(img) * target).sum()).backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    # only the face crop influences the embedding
    assert img.grad[:, :, :35].abs().sum() == 0 and img.grad[:, :, :, 220:].abs().sum() == 0


def test_seeded_writer_and_prefix(tmp_path):
    path = write_seeded_identity_net(tmp_path / "tiny.pth", seed=1, tiny=True)
    R = load_identity_net(path)
    assert R.units == (1, 1, 1, 1) and R.widths == (16, 32, 64, 128) and R.embed_dim == 512
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        emb = R.embed_faces(x)
    assert emb.shape == (2, 512)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    assert (emb[0] - emb[1]).abs().max() > 1e-3  # different faces, different embeddings
    # DataParallel-prefixed copies load to the same net
    state = torch.load(path, weights_only=True)
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "prefixed.pth")
    with torch.no_grad():
        torch.testing.assert_close(load_identity_net(tmp_path / "prefixed.pth").embed_faces(x), emb)
    # same seed, same file contents
    again = torch.load(write_seeded_identity_net(tmp_path / "again.pth", seed=1, tiny=True), weights_only=True)
    assert all(torch.equal(state[k], again[k]) for k in state)


def test_bad_files_and_inputs(tmp_path):
    path = write_seeded_identity_net(tmp_path / "tiny.pth", seed=0, tiny=True)
    state = torch.load(path, weights_only=True)
    state["output_layer.3.weight"] = state["output_layer.3.weight"][:, :10]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"bad\.pth.*output_layer\.3\.weight"):
        load_identity_net(tmp_path / "bad.pth")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other\.pth.*IR-SE"):
        load_identity_net(tmp_path / "other.pth")
    R = load_identity_net(path)
    with pytest.raises(InputError, match="112"):
        R(torch.zeros(1, 3, 64, 64))
