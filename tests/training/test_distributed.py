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
    del ddp
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


def _failing_worker(rank: int, world: int, port: int, out: str) -> None:
    import os
    import time
    from pathlib import Path

    from soundedit.training import distributed

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    distributed.init_from_env("cpu")
    done = Path(f"{out}.rank1-left")
    if rank == 1:  # this rank hit an error: it must leave without waiting for rank 0
        distributed.shutdown(clean=False)
        done.touch()
        return
    deadline = time.monotonic() + 60  # rank 0 never reaches a barrier; it only waits for rank 1 to have left
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    Path(f"{out}.rank0-saw").write_text(str(done.exists()))
    distributed.shutdown(clean=False)


@pytest.mark.timeout(180)
def test_a_failing_rank_leaves_without_waiting_for_the_others(tmp_path):
    out = str(tmp_path / "flag")
    mp.spawn(_failing_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    assert (tmp_path / "flag.rank0-saw").read_text() == "True"


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


def _train_worker(rank: int, world: int, port: int, clip_path: str, audio: list[str], out: str, mels: str) -> None:
    import os

    from soundedit.config import AudioConfig, EncoderConfig, TrainConfig
    from soundedit.models import load_clip_space
    from soundedit.training import distributed
    from soundedit.training.loop import train_alignment
    from soundedit.training.manifest import ManifestRow

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    _, device = distributed.init_from_env("cpu")
    rows = [ManifestRow(audio=a, label=f"class {i % 4}") for i, a in enumerate(audio)]
    cfg = TrainConfig(encoder=EncoderConfig(arch="test_byobnet", embed_dim=64,
                                            audio=AudioConfig(sample_rate=16000, n_mels=32, duration=2.0)),
                      optimizer="adamw", batch_size=4, epochs=2, text_augment=False, precise_bn_batches=1)
    train_alignment(cfg, rows[:8], clip=load_clip_space(clip_path), out_dir=out, val_rows=rows[8:], device=device,
                    cache_dir=mels)
    distributed.shutdown()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_train_alignment_under_two_gloo_ranks(esc50_root, tmp_path):
    """The whole loop under DDP: shared mel cache, sharded batches, gathered loss, rank 0 writes."""
    import json

    from soundedit.models import load_audio_encoder
    from soundedit.testing.clip import write_tiny_openai_clip

    clip = write_tiny_openai_clip(tmp_path / "clip.pt", embed_dim=64)
    audio = [str(p) for p in sorted((esc50_root / "audio").iterdir())[:10]]
    out = tmp_path / "run"
    mp.spawn(_train_worker, args=(2, _free_port(), str(clip), audio, str(out), str(tmp_path / "mels")), nprocs=2,
             join=True)
    meta = json.loads((out / "last.json").read_text())
    assert meta["epoch"] == 2 and meta["global_step"] == 4  # 8 clips, global batch 4 (2 per rank)
    assert load_audio_encoder(out / "last.safetensors").embed_dim == 64
    steps = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in steps if x["kind"] == "epoch"] == [2, 4]
