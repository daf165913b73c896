"""Two gloo processes on localhost give the same InfoNCE loss and gradients as one process on the whole batch."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp

N, D_IN, D = 8, 6, 5  # global batch, input size, embedding size


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D_IN, generator=g)
    x_aug = x + 0.1 * torch.randn(N, D_IN, generator=g)
    text = torch.randn(N, D, generator=g)
    groups = torch.tensor([0, 1, 2, 0, 3, 4, 5, 1])  # some rows share a text
    return x, x_aug, text, groups


def _model():
    from soundedit.training.losses import AlignmentLoss
    from soundedit.training.loop import AlignmentModel

    torch.manual_seed(1)
    return AlignmentModel(torch.nn.Linear(D_IN, D), AlignmentLoss(logit_scale=5.0, learnable=True))


def _step(model, ddp, x, x_aug, text, groups):
    emb = ddp(torch.cat([x, x_aug]))
    b = x.shape[0]
    loss, _ = model.loss(emb[:b], text=text, audio_aug=emb[b:], text_groups=groups)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import os

    from torch.nn.parallel import DistributedDataParallel

    from soundedit.training import distributed

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    info, device = distributed.init_from_env("cpu")
    assert info.world_size == world and device.type == "cpu"
    x, x_aug, text, groups = _data()
    shard = slice(rank * N // world, (rank + 1) * N // world)
    model = _model()
    ddp = DistributedDataParallel(model)
    loss, grads = _step(model, ddp, x[shard], x_aug[shard], text[shard], groups[shard])
    torch.save({"loss": loss, "grads": grads}, f"{out}.{rank}")
    distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(180)
def test_gathered_infonce_matches_one_big_batch(tmp_path):
    out = str(tmp_path / "rank")
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    model = _model()
    loss, grads = _step(model, model, *_data())
    for rank in range(2):
        got = torch.load(f"{out}.{rank}", weights_only=True)
        torch.testing.assert_close(got["loss"], loss, rtol=1e-5, atol=1e-6)
        assert set(got["grads"]) == set(grads) == {"encoder.weight", "encoder.bias", "loss.log_logit_scale"}
        for name, g in grads.items():
            assert g.abs().sum() > 0
            torch.testing.assert_close(got["grads"][name], g, rtol=1e-4, atol=1e-6)


def test_without_gathering_the_loss_differs(tmp_path):
    # The check above can fail: per-rank losses without the gather are not the global one.
    from soundedit.training.losses import info_nce

    x, _, text, _ = _data()
    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.nn.Linear(D_IN, D)(x), dim=-1).detach()
    t = torch.nn.functional.normalize(text, dim=-1)
    whole = info_nce(a, t, 5.0)
    halves = (info_nce(a[:4], t[:4], 5.0) + info_nce(a[4:], t[4:], 5.0)) / 2
    assert abs(whole.item() - halves.item()) > 1e-3
