"""Zero-shot and probe runs end to end with stand-in models whose right answers are known."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from soundedit.evaluation.datasets import load_dataset
from soundedit.evaluation.runs import NamedEncoder, run_probe, run_zero_shot

CLASSES = ["dog bark", "rain", "siren"]


class _OneHotText:
    """embed_text: 'the sound of <class>' -> one-hot of the class (unit norm), like a perfect CLIP."""

    name = "one-hot"
    logit_scale = 100.0
    device = torch.device("cpu")

    def embed_text(self, texts, *, templates=None):
        assert templates == ("{}",)
        out = torch.zeros(len(texts), 8)
        for i, t in enumerate(texts):
            out[i, next(j for j, c in enumerate(CLASSES) if t.endswith(c))] = 1.0
        return out


class _ContentEncoder(torch.nn.Module):
    """The 'audio' file holds a class index (and noise); the embedding points at that class (or a wrong one)."""

    embed_dim = 8

    def __init__(self, shift: int = 0) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(shift))

    def prepare(self, data: bytes, *, device=None):
        return torch.tensor([[float(data.split(b":")[0])]])

    def forward(self, x):
        idx = (x[:, 0].long() + self.shift) % len(CLASSES)
        return torch.nn.functional.one_hot(idx, 8).float() * 3 + 0.01


def _esc50_like(root, n_folds=5, per_fold=2):
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    with (root / "meta" / "esc50.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for fold in range(1, n_folds + 1):
            for t, cls in enumerate(CLASSES):
                for k in range(per_fold):
                    name = f"{fold}-{t}{k}-A-{t}.wav"
                    w.writerow([name, fold, t, cls.replace(" ", "_"), False, 0, "A"])
                    (root / "audio" / name).write_bytes(f"{t}:{fold}{k}".encode())


def test_zero_shot_run_scores_known_answers(tmp_path):
    _esc50_like(tmp_path / "esc")
    ds = load_dataset(tmp_path / "esc")
    assert ds.classes == CLASSES and len(ds.clips) == 30
    right, wrong = NamedEncoder("right", _ContentEncoder(0)), NamedEncoder("wrong", _ContentEncoder(1))
    report = run_zero_shot([ds], [right, wrong], _OneHotText(), out_dir=tmp_path / "out")
    r, w = report["results"]["right"]["esc50"], report["results"]["wrong"]["esc50"]
    assert r["top1"] == 1.0 and r["fold_mean"]["top1"] == {"mean": 1.0, "std": 0.0} and set(r["folds"]) == set("12345")
    assert w["top1"] == 0.0 and w["top5"] == 1.0  # 3 classes: always in the top 5
    assert w["confusion"] == [[0, 10, 0], [0, 0, 10], [10, 0, 0]]  # class t predicted as t+1
    md = (tmp_path / "out" / "zeroshot.md").read_text()
    assert "| right | – | – | 100.0 ± 0.0 | – |" in md and "| wrong | – | – | 0.0 ± 0.0 | – |" in md
    assert json.loads((tmp_path / "out" / "zeroshot.json").read_text())["table1"][0]["encoder"] == "right"


def test_probe_run_uses_official_folds(tmp_path):
    _esc50_like(tmp_path / "esc", per_fold=3)
    ds = load_dataset(tmp_path / "esc")
    report = run_probe([ds], [NamedEncoder("right", _ContentEncoder(0))], Cs=(1.0,))
    r = report["results"]["right"]["esc50"]
    assert r["protocol"] == "official-folds" and set(r["folds"]) == set("12345")
    assert r["mean"] == pytest.approx(1.0) and report["table1"][0]["probe"]["esc50"] == (1.0, 0.0)


def test_edit_job_lists_take_a_bom_and_refuse_extra_fields_and_other_encodings(tmp_path, esc50_root):
    from soundedit.errors import InputError
    from soundedit.evaluation.runs import read_jobs

    sound = esc50_root / "audio" / "1-31482-A-42.flac"
    jobs = tmp_path / "jobs.csv"
    jobs.write_bytes(f"\ufeffsource,sound,label\n3,{sound},siren\n".encode())
    assert read_jobs(jobs) == [{"source": 3, "sound": str(sound), "label": "siren", "text": "siren", "row": 2}]
    jobs.write_text(f"source,sound,label\n3,{sound},siren, loud\n")
    with pytest.raises(InputError, match=r"row 2: 4 fields, header has 3 \(quote values"):
        read_jobs(jobs)
    jobs.write_bytes(b"source,sound,label\n3,x.wav,caf\xe9\n")
    with pytest.raises(InputError, match="--jobs: expected a UTF-8 CSV file"):
        read_jobs(jobs)


def _jobs_file(tmp_path, esc50_root, source: str):
    sound = esc50_root / "audio" / "1-31482-A-42.flac"
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"source,sound,label\n0,{sound},siren\n{source},{sound},siren\n")
    return jobs


def test_edit_job_sources_are_checked_while_reading(tmp_path, esc50_root, monkeypatch):
    import torch
    from PIL import Image

    from soundedit.errors import InputError
    from soundedit.evaluation.runs import read_jobs

    jobs = _jobs_file(tmp_path, esc50_root, "-3")
    with pytest.raises(InputError) as info:
        read_jobs(jobs)
    assert str(info.value) == (f"--jobs {jobs}: row 3: source: expected an integer from 0 to {2**63 - 1} "
                               "(2**63 - 1), got -3")

    torch.save(torch.zeros(3, 8, 32), tmp_path / "w_three.pt")
    jobs = _jobs_file(tmp_path, esc50_root, "w_three.pt")
    with pytest.raises(InputError, match=r"^--jobs .*jobs.csv: row 3: latent .*w_three.pt' holds 3 codes "
                                         r"\(shape \(3, 8, 32\)\); expected one code per row$"):
        read_jobs(jobs)

    torch.save(torch.full((1, 8, 32), float("nan")), tmp_path / "w_nan.pt")
    with pytest.raises(InputError, match=r"row 3 latent w_nan.pt: expected finite numbers, got 256 NaN"):
        read_jobs(_jobs_file(tmp_path, esc50_root, "w_nan.pt"))

    Image.new("RGB", (40, 40)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1600 pixels: a decompression bomb now
    with pytest.raises(InputError, match=r"row 3: source .*big.png': the image has 1,600 pixels"):
        read_jobs(_jobs_file(tmp_path, esc50_root, "big.png"))
    monkeypatch.undo()
    Image.new("RGB", (2, 2)).save(tmp_path / "tiny.png")
    with pytest.raises(InputError, match=r"row 3: source 'tiny.png': the photo is 2 x 2 px"):
        read_jobs(_jobs_file(tmp_path, esc50_root, "tiny.png"))

    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"row 3: source 'notes.txt': expected a seed, a latent \(.pt/.pth/.npy\) "
                                         r"or a photo"):
        read_jobs(_jobs_file(tmp_path, esc50_root, "notes.txt"))


def test_edit_job_latents_hold_one_code_for_the_generator(tmp_path, esc50_root):
    from types import SimpleNamespace

    import torch

    from soundedit.errors import InputError
    from soundedit.evaluation.runs import check_job_latents, read_jobs

    generator = SimpleNamespace(n_latent=8, style_dim=32)
    torch.save(torch.zeros(8, 32), tmp_path / "w_plus.pt")  # one W+ code
    check_job_latents(read_jobs(_jobs_file(tmp_path, esc50_root, "w_plus.pt")), generator, "jobs.csv")
    torch.save(torch.zeros(3, 32), tmp_path / "w3.pt")  # three W codes: only the generator tells them apart
    jobs = read_jobs(_jobs_file(tmp_path, esc50_root, "w3.pt"))
    with pytest.raises(InputError, match=r"^--jobs jobs.csv: row 3: latent .*w3.pt' holds 3 codes for this "
                                         r"generator \(shape \(3, 32\)\); expected one code per row$"):
        check_job_latents(jobs, generator, "jobs.csv")


def test_encoders_of_the_same_file_name_get_their_own_plot_names():
    """Two enc.safetensors from different folders wrote the same PNG names: the second's replaced the first's."""
    from soundedit.evaluation.runs import _encoder_slugs

    assert _encoder_slugs(["/a/enc.safetensors", "/b/enc.safetensors", "authors-resnet18"]) == {
        "/a/enc.safetensors": "enc", "/b/enc.safetensors": "enc-2", "authors-resnet18": "authors-resnet18"}


def test_probe_markdown_calls_stratified_splits_splits_and_gives_their_size():
    """With fewer than two official folds the per-fold table read "fold 1, 2, 3" (official-looking ids
    for CV splits inside one fold) with an empty n column."""
    from soundedit.evaluation.runs import _markdown

    res = {"protocol": "stratified-3", "folds": {"1": 0.5, "2": 0.25, "3": 0.75}, "fold_n": {"1": 4, "2": 4, "3": 4},
           "chosen_C": {"1": 1.0, "2": 1.0, "3": 0.1}}
    report = {"results": {"enc": {"esc50": res}}, "datasets": {}, "created": "now",
              "environment": {"soundedit": "0", "torch": "0", "scikit-learn": "0"}}
    md = _markdown("Linear probe", report, [], part="probe")
    assert "per split (stratified-3: no official folds to cross-validate on" in md
    assert "| split 2 | 4 | 25.0 |" in md and "| 2 |" not in md


def test_table1_from_zero_shot_alone(tmp_path):
    """write_table1 takes probe=None (its signature says so); the stratified-figures note read probe["results"]."""
    from soundedit.evaluation.runs import write_table1

    zeroshot = {"table1": [{"encoder": "enc", "zeroshot": {"esc50": [0.5, 0.1]}}], "results": {}}
    files = write_table1(tmp_path, zeroshot, None)
    assert "Table 1" in files["markdown"].read_text() and "stratified" not in files["markdown"].read_text()
