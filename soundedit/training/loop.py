"""The alignment training loop: encoder + InfoNCE against frozen CLIP, validation, checkpoints, resume.

:func:`train_alignment` is the pure entry point (the CLI is a thin wrapper).  An
output folder holds:

- ``last.safetensors`` / ``best.safetensors``: the encoder, self-describing
  (:func:`soundedit.models.audio_encoder.save_audio_encoder`; loads with
  ``load_audio_encoder``), each with a ``.json`` sidecar carrying the full
  :class:`TrainConfig`, epoch, step and validation metrics;
- ``resume.pt``: everything needed to continue exactly (encoder, logit scale,
  optimizer, scheduler, loss scaler, RNG states, epoch and step);
- ``metrics.jsonl`` (one JSON object per logged step / epoch) and ``tb/``
  (TensorBoard event files, when ``tensorboard`` is installed).

Determinism: the sample order, SpecAugment masks and text augmentation are
functions of (seed, epoch, step/sample), so a run resumed from ``resume.pt``
continues with exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from soundedit.config import MAX_LR, OPTIMIZERS, TrainConfig, from_dict, to_dict
from soundedit.errors import DivergedError, InputError, check_number, check_seed
from soundedit.training import distributed as dist_utils
from soundedit.training.data import ClipDataset, EpochSampler, MelCache, eval_batches
from soundedit.training.losses import AlignmentLoss
from soundedit.training.manifest import ManifestRow
from soundedit.text.augment import augment_seed
from soundedit.text.templates import label_to_prompt
from soundedit.training.targets import TargetCache, text_id

logger = logging.getLogger("soundedit")

RESUME_FILE = "resume.pt"
METRICS_FILE = "metrics.jsonl"


@dataclass
class TrainResult:
    """What :func:`train_alignment` produced."""

    out_dir: Path
    last: Path
    best: Path | None
    epochs: int
    global_step: int
    history: list[dict] = field(default_factory=list)  # one dict of metrics per finished epoch


class AlignmentModel(nn.Module):
    """The trained parts: the audio encoder and the loss (which owns the logit scale); DDP wraps this."""

    def __init__(self, encoder: nn.Module, loss: AlignmentLoss) -> None:
        super().__init__()
        self.encoder, self.loss = encoder, loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def lr_factor(step: int, *, config: TrainConfig, steps_per_epoch: int) -> float:
    """Multiplier of ``config.lr`` at optimizer step ``step`` (warm-up, then the schedule).

    ``cosine_cyclic`` restarts a cosine from lr down to ``lr * min_lr_ratio`` every
    ``cycle_epochs``; ``cosine`` is one cycle over the whole run; ``constant`` is flat.
    """
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "cosine":
        period = max(1, config.epochs * steps_per_epoch)
    elif config.schedule == "cosine_cyclic":
        period = max(1, config.cycle_epochs * steps_per_epoch)
    else:
        raise InputError(f"schedule: expected cosine_cyclic, cosine or constant, got {config.schedule!r}")
    t = (step % period) / period
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def check_config(cfg: TrainConfig) -> None:
    """Reject settings training cannot run with, before any data or model is loaded (the CLI calls it first).

    Raises:
        InputError: naming the setting, what was expected and what was got.
    """
    if cfg.optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer: expected 'sgd' or 'adamw', got {cfg.optimizer!r}")
    if cfg.schedule not in ("cosine_cyclic", "cosine", "constant"):
        raise InputError(f"schedule: expected cosine_cyclic, cosine or constant, got {cfg.schedule!r}")
    for name in ("batch_size", "epochs", "grad_accum", "cycle_epochs"):
        if getattr(cfg, name) < 1:
            raise InputError(f"{name}: expected a positive integer, got {getattr(cfg, name)}")
    if not 0 <= cfg.crop_seconds <= cfg.encoder.audio.duration:
        raise InputError(f"crop_seconds: expected 0 (off) up to the clip duration {cfg.encoder.audio.duration}, "
                         f"got {cfg.crop_seconds}")
    check_number(cfg.lr, "lr", low=0, high=MAX_LR, low_open=True)
    check_seed(cfg.seed, "seed")
    for name in ("momentum", "weight_decay", "min_lr_ratio", "weight_text", "weight_image", "weight_augment",
                 "logit_scale", "max_logit_scale"):
        check_number(getattr(cfg, name), name, low=0)
    if cfg.encoder.layout != "clean":
        raise InputError("encoder.layout: training uses the clean log-mel layout, got 'official' "
                         "(the authors' scrambled input is for their released weights only)")


def _optimizer(model: AlignmentModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    # The logit scale is a temperature, not a weight: no weight decay on it (as CLIP).
    groups = [{"params": [p for p in model.encoder.parameters() if p.requires_grad], "weight_decay": cfg.weight_decay}]
    scale = [p for p in model.loss.parameters() if p.requires_grad]
    if scale:
        groups.append({"params": scale, "weight_decay": 0.0})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))


class _Metrics:
    """metrics.jsonl + TensorBoard (if installed), written by the main rank only."""

    def __init__(self, out_dir: Path, *, enabled: bool, resume_step: int | None) -> None:
        self.enabled = enabled
        self.path = out_dir / METRICS_FILE
        self.tb = None
        if not enabled:
            return
        if resume_step is not None and self.path.is_file():
            # Drop what a killed run logged after its last checkpoint: those steps are redone.
            from soundedit.fileio import write_text

            keep = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            write_text(self.path, "".join(line + "\n" for line in keep))
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional (the dev extra)
            logger.info("tensorboard is not installed: metrics go to %s only (pip install tensorboard)", self.path)
        else:
            self.tb = SummaryWriter(str(out_dir / "tb"), purge_step=None if resume_step is None else resume_step + 1)

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tb is not None:
            prefix = record["kind"]
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{prefix}/{k}", v, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _comparable(cfg_dict: dict) -> dict:
    # Settings a resumed run may change: more epochs, logging/saving cadence.
    return {k: v for k, v in cfg_dict.items() if k not in ("epochs", "log_every_steps", "save_every_steps")}


def _data_fingerprint(rows: Sequence[ManifestRow]) -> str:
    """sha256 of the training clips in order (file names, texts/labels, frames, windows): what a resumed
    run must train on to continue the same batches.  File names, not paths, so a moved dataset still resumes."""
    import hashlib

    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([Path(r.audio).name, r.text, r.label, Path(r.image).name if r.image else None, r.start,
                             r.duration]).encode() + b"\n")
    return h.hexdigest()


class _Trainer:
    def __init__(self, config: TrainConfig, train_rows: Sequence[ManifestRow], val_rows: Sequence[ManifestRow] | None,
                 clip, out_dir: Path, device: torch.device, cache_dir: Path | None, num_workers: int,
                 on_step: Callable[[int], None] | None) -> None:
        from soundedit.models.audio_encoder import build_audio_encoder

        self.info = dist_utils.current()
        self.device = device
        self.out_dir = out_dir
        self.on_step = on_step
        self.targets = TargetCache(clip)
        # Shapes come from the model: the encoder's output size is the CLIP space's.
        if config.encoder.embed_dim != clip.embed_dim:
            logger.info("encoder embed_dim set to %d (the CLIP space's)", clip.embed_dim)
            config = dataclasses.replace(config, encoder=dataclasses.replace(config.encoder, embed_dim=clip.embed_dim))
        self.cfg = config
        self.train_rows, self.val_rows = list(train_rows), list(val_rows or [])
        self.data_name: str | None = None  # the training manifest, for messages (train_alignment(manifest=...))
        self.prompts = [r.prompt(config.template) for r in self.train_rows]
        self.val_prompts = [r.prompt(config.template) for r in self.val_rows]
        self.images = [r.image for r in self.train_rows]
        self.use_images = config.weight_image > 0 and any(self.images)
        if self.use_images and not all(self.images):
            missing = sum(1 for i in self.images if not i)
            raise InputError(f"manifest: {missing} of {len(self.images)} rows have no image while others do; "
                             "give every row a frame or none (or set weight_image=0)")
        self.wordnet = None
        self.vocabulary: list[str] = []
        if config.text_augment:
            from soundedit.text.augment import content_words
            from soundedit.text.wordnet_data import load_wordnet

            self.wordnet = load_wordnet()
            self.vocabulary = content_words(self.prompts)

        audio_cfg = config.encoder.audio
        train_cache = val_cache = None
        if cache_dir is not None:
            # The main rank computes the cache; the others wait and open the same file.
            if self.info.is_main:
                train_cache = MelCache.for_rows(self.train_rows, audio_cfg, cache_dir)
                val_cache = MelCache.for_rows(self.val_rows, audio_cfg, cache_dir) if self.val_rows else None
            dist_utils.barrier()
            if not self.info.is_main:
                train_cache = MelCache.for_rows(self.train_rows, audio_cfg, cache_dir)
                val_cache = MelCache.for_rows(self.val_rows, audio_cfg, cache_dir) if self.val_rows else None
        self.train_set = ClipDataset(self.train_rows, audio_cfg, cache=train_cache)
        self.val_set = ClipDataset(self.val_rows, audio_cfg, cache=val_cache) if self.val_rows else None
        self.sampler = EpochSampler(len(self.train_rows), batch_size=config.batch_size, grad_accum=config.grad_accum,
                                    rank=self.info.rank, world_size=self.info.world_size, seed=config.seed)
        self.num_workers = num_workers

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)  # the initial weights are a function of the seed
            encoder = build_audio_encoder(config.encoder)
        loss = AlignmentLoss(logit_scale=config.logit_scale, learnable=config.learn_logit_scale,
                             max_logit_scale=config.max_logit_scale, weight_text=config.weight_text,
                             weight_image=config.weight_image if self.use_images else 0.0,
                             weight_augment=config.weight_augment)
        self.model = AlignmentModel(encoder, loss).to(device)
        self.ddp = self.model
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = _optimizer(self.model, config)
        steps = self.sampler.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, config=config, steps_per_epoch=steps))
        self.amp = config.amp and device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if self.amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.epoch_loss, self.epoch_n = 0.0, 0  # running train loss of the current epoch (kept across resumes)
        self.best_value: float | None = None
        self.history: list[dict] = []

    # -- state ------------------------------------------------------------------------------

    def state(self) -> dict:
        return {"format": "soundedit.train_resume", "version": 1, "config": to_dict(self.cfg),
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
                "epoch_loss": self.epoch_loss, "epoch_n": self.epoch_n, "best_value": self.best_value,
                "history": self.history, "rng": _rng_state(),
                "data": {"manifest": self.data_name, "rows": len(self.train_rows),
                         "sha256": _data_fingerprint(self.train_rows)}}

    def load_state(self, path: Path) -> None:
        from soundedit.errors import CheckpointError

        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except (OSError, RuntimeError, EOFError) as exc:
            raise CheckpointError(f"--resume: {path} is not a readable resume file ({exc})") from None
        if not isinstance(state, dict) or state.get("format") != "soundedit.train_resume":
            raise CheckpointError(f"--resume: {path} is not a soundedit resume file")
        saved = from_dict(TrainConfig, state["config"])
        if _comparable(to_dict(saved)) != _comparable(to_dict(self.cfg)):
            a, b = _comparable(to_dict(saved)), _comparable(to_dict(self.cfg))
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise InputError(f"--resume: the run in {path.parent} used other settings ({', '.join(diff)} differ); "
                             "resume with the same config or start a new --out")
        data = state.get("data")  # absent from resume files written before it was recorded
        if isinstance(data, dict) and data.get("sha256") != _data_fingerprint(self.train_rows):
            old = f"--manifest {data['manifest']}" if data.get("manifest") else "another manifest"
            new = f"--manifest {self.data_name}" if self.data_name else "these rows"
            raise InputError(f"--resume: the run in {path.parent} was trained on {old} ({data.get('rows')} clips); "
                             f"{new} ({len(self.train_rows)} clips) lists other clips; resume with the same manifest "
                             "(and --allow-missing choice) or start a new --out")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step_in_epoch, self.global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        self.best_value, self.history = state["best_value"], state["history"]
        self.epoch_loss, self.epoch_n = state["epoch_loss"], state["epoch_n"]
        _set_rng_state(state["rng"])
        logger.info("resumed %s at epoch %d, step %d (global step %d)", path, self.epoch + 1, self.step_in_epoch,
                    self.global_step)

    def check_weights(self) -> None:
        """Refuse to save non-finite weights: a step with a finite loss can still leave NaN/inf weights
        behind (e.g. an infinite learning rate), and saving them would overwrite the last good files.
        One device sync per save, which copies the weights to the host anyway."""
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise DivergedError(f"training diverged (non-finite weights after global step {self.global_step}, "
                                f"epoch {self.epoch + 1}); nothing more is saved (the last good state stays in "
                                "--out); try a lower --lr")

    def save_resume(self) -> None:
        if not self.info.is_main:
            return
        self.check_weights()
        from soundedit.fileio import atomic_open

        with atomic_open(self.out_dir / RESUME_FILE, "wb") as fh:
            torch.save(self.state(), fh)

    def save_encoder(self, name: str, metrics: dict) -> Path:
        from soundedit.fileio import write_json
        from soundedit.models.audio_encoder import save_audio_encoder

        self.check_weights()
        path = save_audio_encoder(self.model.encoder, self.out_dir / f"{name}.safetensors")
        write_json(path.with_suffix(".json"), {
            "encoder": path.name, "train_config": to_dict(self.cfg), "epoch": self.epoch + 1,
            "global_step": self.global_step, "logit_scale": float(self.model.loss.logit_scale.detach()),
            "clip": getattr(self.targets.clip, "name", ""), "metrics": metrics})
        return path

    # -- one step ---------------------------------------------------------------------------

    def batch_texts(self, indices: list[int]) -> list[str]:
        if not self.cfg.text_augment:
            return [self.prompts[i] for i in indices]
        from soundedit.text.augment import TextAugmentConfig, augment_text

        tcfg = TextAugmentConfig(self.cfg.p_synonym_replace, self.cfg.p_synonym_insert, self.cfg.p_permute,
                                 self.cfg.p_random_insert)
        return [augment_text(self.prompts[i], rng=random.Random(augment_seed(self.cfg.seed, self.epoch, i)),
                             config=tcfg, vocabulary=self.vocabulary, wordnet=self.wordnet) for i in indices]

    def random_crop(self, mel: torch.Tensor, indices: list[int]) -> torch.Tensor:
        """A random window of ``crop_seconds`` per clip; offsets are a function of (seed, epoch, sample)."""
        audio = self.cfg.encoder.audio
        frames = 1 + round(self.cfg.crop_seconds * audio.sample_rate) // audio.hop_length
        total = mel.shape[-1]
        if frames >= total:
            return mel
        out = []
        for row, i in zip(mel, indices):
            g = torch.Generator().manual_seed(augment_seed(self.cfg.seed, self.epoch, i))
            start = int(torch.randint(0, total - frames + 1, (1,), generator=g))
            out.append(row[..., start:start + frames])
        return torch.stack(out)

    def micro_step(self, mel: torch.Tensor, indices: list[int], micro: int) -> tuple[torch.Tensor, dict]:
        """Loss of one micro-batch ``mel`` (b, n_mels, frames) of this rank."""
        if self.cfg.crop_seconds:
            mel = self.random_crop(mel, indices)
        x = mel
        if self.cfg.weight_augment:
            from soundedit.audio.augment import spec_augment

            # SpecAugment masks are a function of (seed, step, micro-batch, rank): resumable.
            g = torch.Generator().manual_seed(
                ((self.cfg.seed * 1_000_003 + self.global_step) * 131 + micro) * 4099 + self.info.rank)
            aug = spec_augment(mel, freq_ratio=self.cfg.freq_mask_ratio, time_ratio=self.cfg.time_mask_ratio,
                               generator=g)
            x = torch.cat([mel, aug])  # one forward for both views
        x = x.to(self.device, non_blocking=True).unsqueeze(1)  # (B, 1, n_mels, frames)
        with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            emb = self.ddp(x)
        b = mel.shape[0]
        audio, audio_aug = (emb[:b], emb[b:]) if self.cfg.weight_augment else (emb, None)
        texts = self.batch_texts(indices)
        text = self.targets.text(texts, self.device) if self.cfg.weight_text else None
        # Positives are grouped by the prompt before augmentation: two clips of one class stay
        # positives of each other however differently their texts were augmented this step.
        groups = torch.tensor([text_id(self.prompts[i]) for i in indices], device=self.device)
        image = self.targets.image([self.images[i] for i in indices], self.device) if self.use_images else None
        image_groups = torch.tensor([text_id(self.images[i]) for i in indices], device=self.device) if self.use_images else None
        return self.model.loss(audio, text=text, image=image, audio_aug=audio_aug, text_groups=groups,
                               image_groups=image_groups)

    # -- validation -------------------------------------------------------------------------

    @torch.no_grad()
    def precise_bn(self) -> None:
        """Re-estimate BatchNorm running statistics as plain averages over training batches.

        The running averages (momentum 0.1) lag far behind the weights in short runs,
        and eval-mode outputs then collapse; this recomputes them for the current
        weights from ``precise_bn_batches`` un-augmented batches in a fixed order.
        """
        norms = [m for m in self.model.encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        batch = self.sampler.shard
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        was_training = self.model.encoder.training
        self.model.encoder.train()
        for idx in eval_batches(len(self.train_set), batch)[:self.cfg.precise_bn_batches]:
            mel = torch.stack([self.train_set[i][0] for i in idx])
            if self.cfg.crop_seconds:
                mel = self.random_crop(mel, idx)
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                self.model.encoder(mel.to(self.device).unsqueeze(1))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        self.model.encoder.train(was_training)

    @torch.no_grad()
    def validate(self) -> dict:
        """Validation loss (a<->t, a<->v) and zero-shot top-1 over the validation labels."""
        if self.val_set is None:
            return {}
        encoder = self.model.encoder
        was_training = encoder.training
        encoder.eval()
        batch = self.sampler.shard
        embs, losses = [], []
        for idx in eval_batches(len(self.val_set), batch):
            mel = torch.stack([self.val_set[i][0] for i in idx]).to(self.device).unsqueeze(1)
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                a = encoder(mel).float()
            embs.append(a)
            texts = [self.val_prompts[i] for i in idx]
            images = [self.val_rows[i].image for i in idx]
            has_images = self.use_images and all(images)
            loss, _ = self.model.loss(
                a, text=self.targets.text(texts, self.device), gather=False,
                text_groups=torch.tensor([text_id(t) for t in texts], device=self.device),
                image=self.targets.image(images, self.device) if has_images else None,
                image_groups=torch.tensor([text_id(p) for p in images], device=self.device) if has_images else None)
            losses.append((float(loss), len(idx)))
        encoder.train(was_training)
        metrics = {"val_loss": sum(v * n for v, n in losses) / len(self.val_set)}
        # A class is a label (prompted by the template) or, for rows without one, the text itself.
        labels = [r.label or p for r, p in zip(self.val_rows, self.val_prompts)]
        prompt_of = {lbl: label_to_prompt(r.label, self.cfg.template) if r.label else p
                     for lbl, r, p in zip(labels, self.val_rows, self.val_prompts)}
        classes = sorted(prompt_of)
        if len(classes) >= 2:
            class_prompts = [prompt_of[c] for c in classes]
            t = self.targets.text(class_prompts, self.device)
            a = torch.nn.functional.normalize(torch.cat(embs), dim=-1)
            pred = (a @ t.t()).argmax(dim=1).cpu()
            position = {c: i for i, c in enumerate(classes)}
            truth = torch.tensor([position[lbl] for lbl in labels])
            metrics["val_top1"] = float((pred == truth).float().mean())
            metrics["val_classes"] = len(classes)
        return metrics

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> TrainResult:
        from torch.utils.data import DataLoader

        from soundedit.runtime import progress

        cfg, info = self.cfg, self.info
        metrics_log = _Metrics(self.out_dir, enabled=info.is_main,
                               resume_step=self.global_step if self.global_step or self.epoch else None)
        steps = self.sampler.steps_per_epoch
        total_steps = cfg.epochs * steps
        start_time, done_at_start = time.perf_counter(), self.global_step
        try:
            while self.epoch < cfg.epochs:
                self.sampler.set_epoch(self.epoch, self.step_in_epoch)
                loader = DataLoader(self.train_set, batch_sampler=self.sampler, num_workers=self.num_workers,
                                    pin_memory=self.device.type == "cuda", persistent_workers=False)
                self.model.train()
                t_epoch = time.perf_counter()
                with progress(f"epoch {self.epoch + 1}/{cfg.epochs}", total=steps) as bar:
                    bar.update(completed=self.step_in_epoch)
                    micro, acc_terms, acc_loss = 0, {}, 0.0
                    for mel, idx in loader:
                        last_micro = micro == cfg.grad_accum - 1
                        # DDP all-reduces gradients only on the micro-batch that ends an optimizer step.
                        sync = self.ddp.no_sync() if (info.enabled and not last_micro) else contextlib.nullcontext()
                        with sync:
                            loss, terms = self.micro_step(mel, idx.tolist(), micro)
                            self.scaler.scale(loss / cfg.grad_accum).backward()
                        acc_loss += float(loss.detach()) / cfg.grad_accum
                        for k, v in terms.items():
                            acc_terms[k] = acc_terms.get(k, 0.0) + v / cfg.grad_accum
                        micro += 1
                        if not last_micro:
                            continue
                        if not math.isfinite(acc_loss):  # already read back for logging: checking it is free
                            raise DivergedError(f"training diverged (loss is {acc_loss} at global step "
                                                f"{self.global_step + 1}, epoch {self.epoch + 1}); nothing more is "
                                                "saved (the last good state stays in --out); try a lower --lr")
                        self.scaler.step(self.optimizer)
                        self.scaler.update()
                        self.optimizer.zero_grad(set_to_none=True)
                        self.scheduler.step()
                        self.step_in_epoch += 1
                        self.global_step += 1
                        self.epoch_loss, self.epoch_n = self.epoch_loss + acc_loss, self.epoch_n + 1
                        elapsed = time.perf_counter() - start_time
                        rate = (self.global_step - done_at_start) * cfg.batch_size / max(elapsed, 1e-9)
                        eta = (total_steps - self.global_step) * cfg.batch_size / max(rate, 1e-9)
                        bar.advance(1)
                        bar.update(postfix=f"loss {acc_loss:.3f} | {rate:.1f} clips/s | ETA {_hms(eta)}")
                        if cfg.log_every_steps and self.global_step % cfg.log_every_steps == 0:
                            metrics_log.log({"kind": "step", "step": self.global_step, "epoch": self.epoch + 1,
                                             "loss": acc_loss, **{f"loss_{k}": v for k, v in acc_terms.items()},
                                             "lr": self.scheduler.get_last_lr()[0],
                                             "logit_scale": float(self.model.loss.logit_scale.detach()), "clips_per_s": rate})
                        micro, acc_terms, acc_loss = 0, {}, 0.0
                        if cfg.save_every_steps and self.global_step % cfg.save_every_steps == 0 \
                                and self.step_in_epoch < steps:
                            self.save_resume()
                        if self.on_step is not None:
                            self.on_step(self.global_step)
                record = {"kind": "epoch", "step": self.global_step, "epoch": self.epoch + 1,
                          "train_loss": self.epoch_loss / max(self.epoch_n, 1), "epoch_time_s": time.perf_counter() - t_epoch,
                          "logit_scale": float(self.model.loss.logit_scale.detach())}
                if info.is_main:
                    if cfg.precise_bn_batches:
                        self.precise_bn()
                    record.update(self.validate())
                dist_utils.barrier()
                self.history.append(record)
                metrics_log.log(record)
                logger.info("epoch %d/%d: %s", self.epoch + 1, cfg.epochs,
                            ", ".join(f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, float)))
                if info.is_main:
                    self.save_encoder("last", record)
                    value = record.get("val_top1", -record.get("val_loss", record["train_loss"]))
                    if self.best_value is None or value > self.best_value:
                        self.best_value = value
                        self.save_encoder("best", record)
                self.epoch, self.step_in_epoch, self.epoch_loss, self.epoch_n = self.epoch + 1, 0, 0.0, 0
                self.save_resume()
        except KeyboardInterrupt:
            # Ctrl-C: keep every finished step (a hard kill loses only the steps since the last save).
            self.save_resume()
            logger.warning("interrupted at global step %d: state saved to %s; continue with --resume",
                           self.global_step, self.out_dir / RESUME_FILE)
            raise
        finally:
            metrics_log.close()
        best = self.out_dir / "best.safetensors"
        return TrainResult(out_dir=self.out_dir, last=self.out_dir / "last.safetensors",
                           best=best if best.is_file() else None, epochs=self.epoch, global_step=self.global_step,
                           history=self.history)


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train_alignment(config: TrainConfig, train_rows: Sequence[ManifestRow], *, clip, out_dir: str | os.PathLike,
                    val_rows: Sequence[ManifestRow] | None = None, device: str | torch.device = "cpu",
                    resume: bool = False, cache_dir: str | os.PathLike | None = None, num_workers: int = 0,
                    on_step: Callable[[int], None] | None = None, manifest: str | os.PathLike | None = None
                    ) -> TrainResult:
    """Train an audio encoder into a frozen CLIP space (the paper's alignment stage).

    Runs single-process, or under ``torchrun`` when the process group is initialised
    (:func:`soundedit.training.distributed.init_from_env`): each rank then trains on
    its shard of every global batch with DDP, and InfoNCE uses the global batch.

    Args:
        config: the recipe (:meth:`TrainConfig.preset` ``"paper"`` or ``"fast"``, or your own).
        train_rows: manifest rows (audio checked readable beforehand, see ``check_audio``).
        clip: the frozen CLIP space (``load_clip_space(...)``): text/image targets.
        out_dir: checkpoints, metrics and logs go here.
        val_rows: validation rows (loss and zero-shot top-1 over their labels each epoch).
        device: this process's device.
        resume: continue from ``out_dir/resume.pt`` (an error if there is none).
        cache_dir: memory-mapped log-mel cache folder (``None``: decode audio every epoch).
        num_workers: DataLoader worker processes.
        on_step: called with the global step after every optimizer step (hooks, tests).
        manifest: the training manifest's name, recorded in ``resume.pt``; a resume with other training
            clips is refused naming the old and the new one (like a resume with other settings).

    Returns:
        A :class:`TrainResult` with the checkpoint paths and per-epoch metrics.

    Raises:
        InputError: bad settings, a batch larger than the data, or a resume file from other settings or clips.
    """
    from soundedit.runtime import resolve_device

    check_config(config)
    if not train_rows:
        raise InputError("train_rows: expected at least one training clip, got none")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trainer = _Trainer(config, train_rows, val_rows, clip, out, resolve_device(device),
                       Path(cache_dir) if cache_dir is not None else None, num_workers, on_step)
    trainer.data_name = str(manifest) if manifest is not None else None
    resume_path = out / RESUME_FILE
    if resume:
        if not resume_path.is_file():
            raise InputError(f"--resume: no {RESUME_FILE} in {out} (nothing to resume; drop --resume to start)")
        trainer.load_state(resume_path)
    elif resume_path.is_file():
        raise InputError(f"--out {out}: holds a run already ({RESUME_FILE}); pass --resume to continue it "
                         "or choose another --out")
    if trainer.epoch >= config.epochs:
        logger.warning("the run in %s already finished %d epoch(s); raise --epochs to train more", out, trainer.epoch)
    return trainer.run()
