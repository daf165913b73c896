"""The training loop on real audio: it learns (held-out zero-shot top-1 well above chance) and resumes exactly."""

from __future__ import annotations

import json

import pytest
import torch

from soundedit.config import AudioConfig, EncoderConfig, TrainConfig
from soundedit.errors import InputError
from soundedit.training import importers
from soundedit.training.loop import train_alignment

# Acoustically distinct ESC-50 classes (8 clips each in fold 1).
CLASSES = ["dog", "rooster", "rain", "sea waves", "crying baby", "clock tick", "siren", "chainsaw", "church bells",
           "hand saw"]
EMBED_DIM = 64


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from soundedit.models import load_clip_space
    from soundedit.testing.clip import write_tiny_openai_clip

    path = write_tiny_openai_clip(tmp_path_factory.mktemp("clip") / "tiny-clip.pt", embed_dim=EMBED_DIM, seed=0)
    return load_clip_space(path)


@pytest.fixture(scope="module")
def esc_split(esc50_root):
    rows = importers.esc50(esc50_root, folds=[1])
    by: dict[str, list] = {}
    for r in rows:
        if r.label in CLASSES:
            by.setdefault(r.label, []).append(r)
    assert sorted(by) == sorted(CLASSES) and all(len(v) == 8 for v in by.values())
    train = [r for c in CLASSES for r in by[c][:6]]
    held_out = [r for c in CLASSES for r in by[c][6:]]
    return train, held_out


@pytest.fixture(scope="module")
def mel_cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mels")


def _small_config(**kw) -> TrainConfig:
    # 16 kHz ESC-50, 32 mel bins, hop 512 (5 s -> 157 frames); a timm test-size net.
    audio = AudioConfig(sample_rate=16000, n_fft=1024, hop_length=512, n_mels=32, duration=5.0)
    base = dict(encoder=EncoderConfig(arch="test_byobnet", embed_dim=EMBED_DIM, audio=audio), optimizer="adamw",
                lr=3e-3, weight_decay=0.01, schedule="cosine", text_augment=False, template="{label}",
                logit_scale=30.0, log_every_steps=1)
    base.update(kw)
    return TrainConfig(**base)


def _weights(path):
    from safetensors.torch import load_file

    return load_file(path)


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(esc_split, tiny_clip, mel_cache_dir, tmp_path):
    train, held_out = esc_split
    rows, val = train[::6][:8], held_out[:4]  # 8 clips of 8 classes; batch 4 -> 2 steps per epoch
    cfg = _small_config(batch_size=4, epochs=3, crop_seconds=2.0, precise_bn_batches=2)
    kw = dict(clip=tiny_clip, val_rows=val, cache_dir=mel_cache_dir)

    full = train_alignment(cfg, rows, out_dir=tmp_path / "full", **kw)
    assert full.global_step == 6 and [h["epoch"] for h in full.history] == [1, 2, 3]

    class Killed(Exception):
        pass

    def kill_at(step):
        def hook(global_step):
            if global_step == step:
                raise Killed  # an abrupt end: nothing is saved beyond the last checkpoint

        return hook

    with pytest.raises(Killed):
        train_alignment(cfg, rows, out_dir=tmp_path / "killed", on_step=kill_at(5), **kw)
    state = torch.load(tmp_path / "killed" / "resume.pt", weights_only=False)
    assert (state["epoch"], state["global_step"]) == (2, 4)  # last checkpoint: end of epoch 2
    with pytest.raises(InputError, match="--resume"):
        train_alignment(cfg, rows, out_dir=tmp_path / "killed", **kw)
    resumed = train_alignment(cfg, rows, out_dir=tmp_path / "killed", resume=True, **kw)
    assert resumed.global_step == 6

    # Ctrl-C saves the state at the current step: nothing is lost.
    with pytest.raises(KeyboardInterrupt):
        train_alignment(cfg, rows, out_dir=tmp_path / "ctrlc", on_step=lambda s: (_ for _ in ()).throw(KeyboardInterrupt)
                        if s == 3 else None, **kw)
    assert torch.load(tmp_path / "ctrlc" / "resume.pt", weights_only=False)["global_step"] == 3
    ctrlc = train_alignment(cfg, rows, out_dir=tmp_path / "ctrlc", resume=True, **kw)

    reference = _weights(full.last)
    for name, run in (("killed", resumed), ("ctrl-c", ctrlc)):
        got = _weights(run.last)
        assert got.keys() == reference.keys()
        for k in reference:
            assert torch.equal(got[k], reference[k]), (name, k, (got[k] - reference[k]).abs().max())
        assert [h["train_loss"] for h in run.history] == [h["train_loss"] for h in full.history]
    # the metrics log of the killed run has no duplicate steps after the resume
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "step"]
    assert steps == [1, 2, 3, 4, 5, 6]
    # a resume with other settings is refused
    with pytest.raises(InputError, match="lr"):
        train_alignment(_small_config(batch_size=4, epochs=4, lr=1e-2, crop_seconds=2.0, precise_bn_batches=2), rows,
                        out_dir=tmp_path / "full", resume=True, **kw)


def test_checkpoints_are_self_describing(esc_split, tiny_clip, mel_cache_dir, tmp_path):
    from soundedit.models import load_audio_encoder

    train, held_out = esc_split
    cfg = _small_config(batch_size=4, epochs=1)
    result = train_alignment(cfg, train[::6][:8], clip=tiny_clip, out_dir=tmp_path / "run", val_rows=held_out[:4],
                             cache_dir=mel_cache_dir)
    enc = load_audio_encoder(result.best)
    assert enc.config == cfg.encoder and enc.embed_dim == EMBED_DIM
    meta = json.loads(result.best.with_suffix(".json").read_text())
    assert meta["train_config"]["encoder"]["arch"] == "test_byobnet" and meta["epoch"] == 1
    assert set(meta["metrics"]) >= {"train_loss", "val_loss", "val_top1"}
    assert (tmp_path / "run" / "tb").is_dir() and any((tmp_path / "run" / "tb").iterdir())
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {x["kind"] for x in lines} == {"step", "epoch"} and all(x["clips_per_s"] > 0 for x in lines if x["kind"] == "step")


@pytest.mark.slow
def test_learns_zero_shot_on_held_out_esc50_clips(esc_split, tiny_clip, mel_cache_dir, tmp_path):
    """10 ESC-50 classes, 6 training clips each; 2 held-out clips per class: chance is 10%.

    Text targets are the class names through the seeded tiny CLIP text tower; the
    encoder starts from random weights.  Held-out top-1 must reach 3x chance (30%);
    this run ends at 40% (8 of 20; per epoch 30, 30, 40, 45, 40, 40, 40, 40%), and the
    training loss falls from 19.0 to 8.2.
    """
    train, held_out = esc_split
    audio = AudioConfig(sample_rate=16000, n_fft=1024, hop_length=512, n_mels=32, duration=2.0, crop="loudest")
    cfg = _small_config(encoder=EncoderConfig(arch="test_byobnet", embed_dim=EMBED_DIM, audio=audio), batch_size=30,
                        epochs=8, precise_bn_batches=10)
    result = train_alignment(cfg, train, clip=tiny_clip, out_dir=tmp_path / "run", val_rows=held_out,
                             cache_dir=mel_cache_dir)
    first, last = result.history[0], result.history[-1]
    assert last["val_classes"] == 10
    assert last["train_loss"] < 0.6 * first["train_loss"]  # the loss falls
    assert last["val_top1"] >= 0.30, [h["val_top1"] for h in result.history]
