"""End-to-end checks of three loop features: gradient accumulation, the L(a<->v) frame term, text augmentation.

All on CPU with a timm test-size encoder, the seeded tiny CLIP and 1-second windows
of a few ESC-50 clips, so each run takes a second or two.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from soundedit.config import AudioConfig, EncoderConfig, TrainConfig
from soundedit.errors import InputError
from soundedit.training import importers
from soundedit.training import loop as loop_mod
from soundedit.training.targets import TargetCache

EMBED_DIM = 64
LABELS = ["dog", "rooster", "rain", "sea waves", "crying baby", "clock tick", "siren", "chainsaw"]


@pytest.fixture(scope="module")
def tiny_clip_file(tmp_path_factory):
    from soundedit.testing.clip import write_tiny_openai_clip

    return write_tiny_openai_clip(tmp_path_factory.mktemp("clip") / "tiny-clip.pt", embed_dim=EMBED_DIM, seed=0)


@pytest.fixture
def clip(tiny_clip_file):
    """A fresh ClipSpace per test (tests wrap its towers to count calls)."""
    from soundedit.models import load_clip_space

    return load_clip_space(tiny_clip_file)


@pytest.fixture(scope="module")
def esc_rows(esc50_root):
    """Three clips of each of LABELS (ESC-50 fold 1), ordered class by class."""
    by: dict[str, list] = {}
    for r in importers.esc50(esc50_root, folds=[1]):
        if r.label in LABELS:
            by.setdefault(r.label, []).append(r)
    return [by[c][j] for c in LABELS for j in range(3)]


@pytest.fixture(scope="module")
def mel_cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mels")


def _config(**kw) -> TrainConfig:
    # 16 kHz, 32 mel bins, 1 s (63 frames): a few ms per micro-batch of test_byobnet.
    audio = AudioConfig(sample_rate=16000, n_fft=512, hop_length=256, n_mels=32, duration=1.0, crop="loudest")
    base = dict(encoder=EncoderConfig(arch="test_byobnet", embed_dim=EMBED_DIM, audio=audio), optimizer="adamw",
                lr=3e-3, weight_decay=0.01, schedule="constant", text_augment=False, template="{label}",
                logit_scale=10.0, learn_logit_scale=False, weight_augment=0.0, log_every_steps=1)
    base.update(kw)
    return TrainConfig(**base)


def _metrics(out_dir, kind):
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


# -- gradient accumulation -----------------------------------------------------------------------


def test_grad_accumulation_update_equals_hand_computed_mean_of_micro_batch_gradients(
        esc_rows, clip, tmp_path, monkeypatch):
    """What accumulation means here, exactly.

    With ``batch_size = K*B`` and ``grad_accum = K`` an optimizer step sees the K
    micro-batches m_1..m_K of B clips (consecutive slices of the epoch's seeded
    permutation) and its gradient is  g = 1/K * sum_k grad L(m_k),  where L(m_k) is
    the symmetric InfoNCE *within* micro-batch k (its negatives are the other B-1
    clips only, and BatchNorm normalises with that micro-batch's statistics).  This
    is *not* the gradient of InfoNCE over one batch of K*B clips (that has K*B-1
    negatives per clip), so the test does not compare against one; it checks that

    - the parameters after each optimizer step equal theta - lr_t * g computed by
      hand from per-micro-batch gradients (plain SGD: momentum 0, no weight decay);
    - the optimizer steps once per K micro-batches (forward/step order), the LR
      schedule and global step advance once per optimizer step, not per micro-batch
      (cosine over 2 steps: lr factors 1.0 then 0.5);
    - the logged step loss is the mean of the K micro-batch losses;
    - BatchNorm running statistics saw every micro-batch once.
    """
    from soundedit.models import audio_encoder as enc_mod
    from soundedit.training.data import ClipDataset
    from soundedit.training.losses import AlignmentLoss
    from soundedit.training.targets import text_id

    K, B, lr, seed = 2, 4, 0.2, 3
    rows = esc_rows[::3] + esc_rows[1::3]  # 16 clips, 2 per class: 1 epoch = 2 optimizer steps = 4 micro-batches
    cfg = _config(optimizer="sgd", momentum=0.0, weight_decay=0.0, lr=lr, schedule="cosine", epochs=1,
                  batch_size=K * B, grad_accum=K, seed=seed, save_every_steps=1)

    events: list[str] = []
    initial: dict = {}
    build = enc_mod.build_audio_encoder

    def counting_build(config, **kw):
        enc = build(config, **kw)
        initial["encoder"] = copy.deepcopy(enc)
        enc.register_forward_hook(lambda *_: events.append("forward"))
        return enc

    make_opt = loop_mod._optimizer

    def counting_opt(model, c):
        opt = make_opt(model, c)
        opt.register_step_post_hook(lambda *_: events.append("step"))
        return opt

    snapshots = {}

    def on_step(step):
        events.append(f"on_step {step}")
        if step == 1:  # save_every_steps=1 wrote resume.pt just before this hook
            snapshots[1] = torch.load(tmp_path / "run" / "resume.pt", weights_only=False)

    monkeypatch.setattr(enc_mod, "build_audio_encoder", counting_build)
    monkeypatch.setattr(loop_mod, "_optimizer", counting_opt)
    result = loop_mod.train_alignment(cfg, rows, clip=clip, out_dir=tmp_path / "run", on_step=on_step)
    snapshots[2] = torch.load(tmp_path / "run" / "resume.pt", weights_only=False)

    assert events == ["forward", "forward", "step", "on_step 1", "forward", "forward", "step", "on_step 2"]
    assert result.global_step == 2
    assert [s["global_step"] for s in (snapshots[1], snapshots[2])] == [1, 2]
    assert [s["scheduler"]["last_epoch"] for s in (snapshots[1], snapshots[2])] == [1, 2]
    logged = _metrics(tmp_path / "run", "step")
    assert [r["step"] for r in logged] == [1, 2]
    assert logged[0]["lr"] == pytest.approx(lr * 0.5)  # the lr for step 2 (cosine over 2 steps)

    # -- the same two steps by hand -------------------------------------------------------------
    enc = initial["encoder"]
    enc.train()
    theta0 = {k: v.detach().clone() for k, v in enc.named_parameters()}
    perm = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed + 0)).tolist()
    micro = [perm[i * B:(i + 1) * B] for i in range(2 * K)]
    data = ClipDataset(rows, cfg.encoder.audio)
    targets = TargetCache(clip)
    loss_fn = AlignmentLoss(logit_scale=10.0, learnable=False, weight_text=1.0, weight_image=0.0, weight_augment=0.0)
    params = [p for p in enc.parameters() if p.requires_grad]
    lr_factors = [1.0, 0.5]  # cosine over epochs * steps_per_epoch = 2 optimizer steps
    step_losses = []
    for step in range(2):
        grads, losses = [torch.zeros_like(p) for p in params], []
        for idx in micro[step * K:(step + 1) * K]:
            mel = torch.stack([data[i][0] for i in idx]).unsqueeze(1)
            texts = [rows[i].label for i in idx]
            loss, _ = loss_fn(enc(mel), text=targets.text(texts), gather=False,
                              text_groups=torch.tensor([text_id(t) for t in texts]))
            for g, d in zip(grads, torch.autograd.grad(loss, params)):
                g += d
            losses.append(float(loss.detach()))
        step_losses.append(sum(losses) / K)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= lr * lr_factors[step] * g / K
        got = snapshots[step + 1]["model"]
        for name, value in enc.state_dict().items():
            assert torch.allclose(got[f"encoder.{name}"], value, rtol=1e-4, atol=1e-6), \
                (step + 1, name, (got[f"encoder.{name}"] - value).abs().max())
    # the updates are large next to the tolerance: dropping the 1/K, a micro-batch's gradient or the
    # schedule's step would all fail above
    moved = max(float((snapshots[1]["model"][f"encoder.{k}"] - v).abs().max()) for k, v in theta0.items())
    assert moved > 1e-2
    assert [r["loss"] for r in logged] == pytest.approx(step_losses, rel=1e-5)
    assert all(int(v) == 2 * K for k, v in snapshots[2]["model"].items() if k.endswith("num_batches_tracked"))


def test_grad_accumulation_needs_a_batch_divisible_into_micro_batches(esc_rows, clip, tmp_path):
    with pytest.raises(InputError, match="--grad-accum"):
        loop_mod.train_alignment(_config(batch_size=6, grad_accum=4, epochs=1), esc_rows[:8], clip=clip,
                                 out_dir=tmp_path / "run")


# -- divergence -------------------------------------------------------------------------------------


def test_a_non_finite_loss_stops_training_without_saving_weights(esc_rows, clip, mel_cache_dir, tmp_path, monkeypatch):
    from soundedit.errors import DivergedError

    micro_step = loop_mod._Trainer.micro_step

    def nan_loss(self, *args, **kwargs):
        loss, terms = micro_step(self, *args, **kwargs)
        return loss * float("nan"), terms

    monkeypatch.setattr(loop_mod._Trainer, "micro_step", nan_loss)
    out = tmp_path / "run"
    with pytest.raises(DivergedError, match=r"training diverged \(loss is nan at global step 1, epoch 1\).*lower --lr"):
        loop_mod.train_alignment(_config(batch_size=8, epochs=1), esc_rows[:8], clip=clip, out_dir=out,
                                 cache_dir=mel_cache_dir)
    assert not list(out.glob("*.safetensors")) and not (out / "resume.pt").exists()


def test_non_finite_weights_are_never_saved(esc_rows, clip, mel_cache_dir, tmp_path, monkeypatch):
    from soundedit.errors import DivergedError

    out = tmp_path / "run"
    trainer: list = []
    micro_step = loop_mod._Trainer.micro_step

    def keep_trainer(self, *args, **kwargs):
        trainer.append(self)
        return micro_step(self, *args, **kwargs)

    def poison(step: int) -> None:  # as an infinite learning rate does: the step's own loss was still finite
        with torch.no_grad():
            next(trainer[-1].model.encoder.parameters()).fill_(float("inf"))

    monkeypatch.setattr(loop_mod._Trainer, "micro_step", keep_trainer)

    with pytest.raises(DivergedError, match=r"training diverged \(non-finite weights after global step 1"):
        loop_mod.train_alignment(_config(batch_size=8, epochs=1), esc_rows[:8], clip=clip, out_dir=out,
                                 cache_dir=mel_cache_dir, on_step=poison)
    assert trainer and not list(out.glob("*.safetensors")) and not (out / "resume.pt").exists()


def test_bad_numbers_in_the_recipe_are_rejected_up_front(esc_rows, clip, tmp_path):
    for kw, message in (({"lr": float("nan")}, "lr: expected a finite number"),
                        ({"lr": float("inf")}, "lr: expected a finite number"),
                        ({"weight_decay": float("nan")}, "weight_decay: expected a finite number >= 0"),
                        ({"seed": 2**64}, "seed: expected an integer from 0 to")):
        with pytest.raises(InputError, match=message):
            loop_mod.train_alignment(_config(**kw), esc_rows[:8], clip=clip, out_dir=tmp_path / "run")


# -- the L(a<->v) frame term ---------------------------------------------------------------------


def _write_frames(folder, n: int, size: int = 48):
    """n distinct small PNG frames (a colour gradient per frame) -> list of file names."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = (xx if i % 2 else yy)[..., None]
        arr = (c0 * (1 - t) + c1 * t).astype(np.uint8)
        name = f"frame{i}.png"
        Image.fromarray(arr).save(folder / name)
        names.append(name)
    return names


def test_image_frames_train_the_av_term_and_are_embedded_once(esc_rows, clip, mel_cache_dir, tmp_path, monkeypatch):
    from soundedit.training.manifest import read_manifest

    frames = _write_frames(tmp_path / "data" / "frames", 10)
    train_src, val_src = esc_rows[::3], esc_rows[1::3][:4]
    # 8 training rows on 6 frames (rows 6 and 7 reuse frames 0 and 1); 4 validation rows: 2 new frames, 2 reused.
    train_frames = frames[:6] + frames[:2]
    val_frames = frames[8:10] + frames[2:4]
    lines = ["audio,label,image,split"]
    lines += [f"{r.audio},{r.label},frames/{f},train" for r, f in zip(train_src, train_frames)]
    lines += [f"{r.audio},{r.label},frames/{f},val" for r, f in zip(val_src, val_frames)]
    manifest = tmp_path / "data" / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    train = read_manifest(manifest, split="train")
    val = read_manifest(manifest, split="val")
    assert train[0].image == str(tmp_path / "data" / "frames" / "frame0.png")  # relative to the manifest

    embedded: list[int] = []
    encode_image = clip.model.encode_image

    def counting_encode_image(x, *a, **kw):
        embedded.append(x.shape[0])
        return encode_image(x, *a, **kw)

    monkeypatch.setattr(clip.model, "encode_image", counting_encode_image)
    # one batch of all 8 clips per epoch: the same InfoNCE batch each step, so the loss is comparable across steps
    cfg = _config(batch_size=8, epochs=6, lr=1e-3)
    result = loop_mod.train_alignment(cfg, train, clip=clip, out_dir=tmp_path / "run", val_rows=val,
                                      cache_dir=mel_cache_dir)

    # frozen CLIP image embeddings: each unique frame through the image tower exactly once, over
    # 6 training steps and 6 validations
    assert sum(embedded) == len(set(train_frames) | set(val_frames)) == 8
    steps = _metrics(tmp_path / "run", "step")
    assert len(steps) == 6
    for r in steps:
        assert {"loss_text", "loss_image"} <= set(r)
        assert r["loss"] == pytest.approx(r["loss_text"] + r["loss_image"], rel=1e-5)
    image = [r["loss_image"] for r in steps]  # this run: 4.46, 2.91, 1.99, 1.79, 1.68, 1.48
    assert image[-1] < 0.5 * image[0] and max(image[1:]) < image[0], image
    assert all("val_loss" in h for h in result.history)

    # the term is really there: with weight_image=0 the same rows train without an image part (and no image tower)
    embedded.clear()
    loop_mod.train_alignment(_config(batch_size=4, epochs=1, weight_image=0.0), train, clip=clip,
                             out_dir=tmp_path / "off", cache_dir=mel_cache_dir)
    assert embedded == [] and all("loss_image" not in r for r in _metrics(tmp_path / "off", "step"))


def test_frames_on_some_rows_only_is_an_error(esc_rows, clip, tmp_path):
    from dataclasses import replace

    frames = _write_frames(tmp_path / "frames", 1)
    rows = [replace(r, image=str(tmp_path / "frames" / frames[0])) if i == 0 else r for i, r in enumerate(esc_rows[:8])]
    with pytest.raises(InputError, match="no image"):
        loop_mod.train_alignment(_config(batch_size=4, epochs=1), rows, clip=clip, out_dir=tmp_path / "run")


# -- text augmentation ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wordnet_root(tmp_path_factory):
    """``None`` when WordNet is found already (NLTK_DATA), else a folder installed from Debian's files."""
    from soundedit.errors import SoundeditError
    from soundedit.text.wordnet_data import DEBIAN_WORDNET, find_wordnet, install

    try:
        find_wordnet()
    except SoundeditError:
        pass
    else:
        yield None
        return
    if not (DEBIAN_WORDNET / "index.sense").is_file():
        pytest.skip("WordNet is not installed (make setup, or apt-get install wordnet-base wordnet-sense-index)")
    from soundedit.text.wordnet_data import load_wordnet

    root = tmp_path_factory.mktemp("nltk_data")
    install(root)
    yield root
    load_wordnet.cache_clear()  # forget the reader of this private copy (other tests load their own)


def _texts_seen(cfg, rows, clip, out_dir, monkeypatch, cache_dir):
    """Run the loop; return (per-micro-batch texts given as targets, strings that reached the text tower)."""
    batches: list[list[str]] = []
    tower: list[str] = []
    text = TargetCache.text

    def recording_text(self, texts, device="cpu"):
        batches.append(list(texts))
        return text(self, texts, device)

    embed_text = clip.embed_text

    def recording_embed_text(texts, **kw):
        tower.extend(t for t in texts if t)
        return embed_text(texts, **kw)

    with monkeypatch.context() as m:
        m.setattr(TargetCache, "text", recording_text)
        m.setattr(clip, "embed_text", recording_embed_text)
        loop_mod.train_alignment(cfg, rows, clip=clip, out_dir=out_dir, cache_dir=cache_dir)
    return batches, tower


def test_text_augmentation_changes_the_texts_fed_to_clip_and_is_seeded(esc_rows, clip, wordnet_root, mel_cache_dir,
                                                                       tmp_path, monkeypatch):
    from soundedit.text.augment import content_words

    if wordnet_root is not None:
        import nltk.data

        # both: soundedit finds WordNet through NLTK_DATA, nltk (3.10's path checks) through nltk.data.path
        monkeypatch.setenv("NLTK_DATA", str(wordnet_root))
        monkeypatch.setattr(nltk.data, "path", [str(wordnet_root), *nltk.data.path])

    rows = esc_rows[::3]  # 8 classes, 8 clips; batch 4 -> 2 micro-batches per epoch
    epochs, seed = 2, 0
    kw = dict(batch_size=4, epochs=epochs, template="the sound of {label}", text_augment=True)
    aug, tower = _texts_seen(_config(seed=seed, **kw), rows, clip, tmp_path / "aug", monkeypatch, mel_cache_dir)
    again, _ = _texts_seen(_config(seed=seed, **kw), rows, clip, tmp_path / "again", monkeypatch, mel_cache_dir)
    other, _ = _texts_seen(_config(seed=1, **kw), rows, clip, tmp_path / "seed1", monkeypatch, mel_cache_dir)

    # the un-augmented prompts of the same batches (epoch e: the permutation seeded with seed + e, cut in 4s)
    raw = []
    for e in range(epochs):
        perm = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed + e)).tolist()
        raw += [[f"the sound of {rows[i].label}" for i in perm[s:s + 4]] for s in (0, 4)]
    assert len(aug) == len(raw) == 2 * epochs and [len(b) for b in aug] == [4] * len(aug)
    assert aug == again  # deterministic under the seed
    assert other != aug  # another seed, other texts
    pairs = [(r, a, e) for e, (rb, ab) in enumerate(zip(raw, aug)) for r, a in zip(rb, ab)]
    changed = [(r, a) for r, a, _ in pairs if r != a]
    assert 4 <= len(changed) < len(pairs), changed
    for r, a in changed:  # an augmentation of its own prompt: words are replaced, inserted, reordered, never dropped
        assert len(a.split()) >= len(r.split()), (r, a)
    assert {a for _, a in changed} <= set(tower)  # the augmented strings are what the CLIP text tower embedded
    # WordNet material: some changed text has a word that no prompt contains (a synonym)
    vocabulary = set(content_words(sorted({r for r, _, _ in pairs}))) | {"the", "sound", "of"}
    assert any(set(a.lower().split()) - vocabulary for _, a in changed), changed
    # each epoch draws new augmentations: some clip gets different texts in the two epochs
    per_clip: dict[str, set[str]] = {}
    for r, a, _ in pairs:
        per_clip.setdefault(r, set()).add(a)
    assert any(len(v) > 1 for v in per_clip.values()), per_clip


def test_clips_of_one_prompt_stay_positives_however_their_texts_were_augmented(
        esc_rows, clip, wordnet_root, mel_cache_dir, tmp_path, monkeypatch):
    """InfoNCE's groups come from the prompts before augmentation: same-class clips share a group even in
    a step where their augmented texts differ, and other classes never share one."""
    from soundedit.training.losses import AlignmentLoss

    if wordnet_root is not None:
        import nltk.data

        monkeypatch.setenv("NLTK_DATA", str(wordnet_root))
        monkeypatch.setattr(nltk.data, "path", [str(wordnet_root), *nltk.data.path])
    groups_seen: list[list[int]] = []
    forward = AlignmentLoss.forward

    def recording_forward(self, audio, **kw):
        if kw.get("gather", True):  # training steps (validation passes gather=False)
            groups_seen.append(kw["text_groups"].tolist())
        return forward(self, audio, **kw)

    monkeypatch.setattr(AlignmentLoss, "forward", recording_forward)
    rows = esc_rows[::3] + esc_rows[1::3]  # 16 clips, 2 per class
    epochs, seed = 2, 0
    cfg = _config(seed=seed, batch_size=8, epochs=epochs, template="the sound of {label}", text_augment=True)
    texts, _ = _texts_seen(cfg, rows, clip, tmp_path / "run", monkeypatch, mel_cache_dir)
    labels = []
    for e in range(epochs):
        perm = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed + e)).tolist()
        labels += [[rows[i].label for i in perm[s:s + 8]] for s in (0, 8)]
    assert len(groups_seen) == len(texts) == len(labels) == 2 * epochs
    split_by_augmentation = 0
    for groups, batch_texts, batch_labels in zip(groups_seen, texts, labels):
        for i in range(8):
            for j in range(i + 1, 8):
                assert (groups[i] == groups[j]) == (batch_labels[i] == batch_labels[j]), (i, j, batch_labels)
                split_by_augmentation += batch_labels[i] == batch_labels[j] and batch_texts[i] != batch_texts[j]
    assert split_by_augmentation > 0  # the case that grouping by augmented text got wrong did occur
