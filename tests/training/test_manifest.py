"""Manifests, importers, missing-file reports and the resumable sampler."""

from __future__ import annotations

import json
import math

import pytest

from soundedit.config import TrainConfig
from soundedit.errors import InputError
from soundedit.training import importers
from soundedit.training.data import EpochSampler
from soundedit.training.loop import lr_factor
from soundedit.training.manifest import ManifestRow, check_audio, read_manifest, write_manifest


def test_manifest_roundtrip_csv_and_jsonl(tmp_path):
    (tmp_path / "a").mkdir()
    rows = [ManifestRow(audio=str(tmp_path / "a" / "x.wav"), label="dog", split="train"),
            ManifestRow(audio="/abs/y.flac", text="rain on a roof", image=str(tmp_path / "f.jpg"), start=1.5,
                        duration=2.0)]
    for name in ("m.csv", "m.jsonl"):
        path = write_manifest(rows, tmp_path / name)
        assert read_manifest(path) == rows
    assert "a/x.wav" in (tmp_path / "m.csv").read_text()  # relative to the manifest's folder
    assert read_manifest(tmp_path / "m.csv", split="train") == rows[:1]
    assert rows[0].prompt() == "the sound of dog" and rows[1].prompt() == "rain on a roof"


def test_manifest_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("audio,text,label\nx.wav,,\n")
    with pytest.raises(InputError, match=r"bad.csv:2: expected a 'text' or a 'label'"):
        read_manifest(bad)
    (tmp_path / "n.csv").write_text("path,label\nx.wav,dog\n")
    with pytest.raises(InputError, match="'audio' column"):
        read_manifest(tmp_path / "n.csv")
    (tmp_path / "s.jsonl").write_text('{"audio": "x.wav", "label": "dog", "start": "soon"}\n')
    with pytest.raises(InputError, match="'start' expected a number"):
        read_manifest(tmp_path / "s.jsonl")
    (tmp_path / "latin1.csv").write_bytes(b"audio,label\nx.wav,caf\xe9\n")
    with pytest.raises(InputError, match="manifest: expected a UTF-8 text file, got .*latin1.csv"):
        read_manifest(tmp_path / "latin1.csv")
    with pytest.raises(InputError, match="manifest: expected a file, got the folder"):
        read_manifest(tmp_path)
    (tmp_path / "wide.csv").write_text("audio,label\nx.wav,dog,barking,loud\n")  # an unquoted comma
    with pytest.raises(InputError, match=r"wide.csv:2: 4 fields, header has 2 \(quote values"):
        read_manifest(tmp_path / "wide.csv")


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path):
    (tmp_path / "excel.csv").write_bytes("\ufeffaudio,label\nx.wav,dog\n".encode())
    assert read_manifest(tmp_path / "excel.csv") == [ManifestRow(audio=str(tmp_path / "x.wav"), label="dog")]


def test_missing_and_unreadable_files_are_reported(esc50_root, tmp_path):
    good = sorted((esc50_root / "audio").iterdir())[:2]
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    rows = [ManifestRow(audio=str(p), label="x") for p in good]
    rows += [ManifestRow(audio=str(tmp_path / "gone.wav"), label="x"), ManifestRow(audio=str(corrupt), label="x")]
    with pytest.raises(InputError) as err:
        check_audio(rows, what="--manifest m.csv")
    msg = str(err.value)
    assert "2 of 4 manifest row(s) cannot be used: 1 missing, 1 unreadable" in msg
    assert "gone.wav" in msg and "corrupt.wav" in msg and "--allow-missing" in msg
    kept, report = check_audio(rows, allow_missing=True)
    assert kept == rows[:2] and report.missing == [str(tmp_path / "gone.wav")] and report.unreadable[0][0] == str(corrupt)



def test_missing_and_unreadable_frames_are_reported(esc50_root, tmp_path):
    from PIL import Image

    clips = sorted((esc50_root / "audio").iterdir())[:3]
    frame = tmp_path / "frame.png"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(frame)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    rows = [ManifestRow(audio=str(clips[0]), label="x", image=str(frame)),
            ManifestRow(audio=str(clips[1]), label="x", image=str(tmp_path / "gone.png")),
            ManifestRow(audio=str(clips[2]), label="x", image=str(broken))]
    with pytest.raises(InputError) as err:
        check_audio(rows, what="--manifest m.csv")
    assert "2 of 3 manifest row(s) cannot be used: 1 missing, 1 unreadable" in str(err.value)
    kept, report = check_audio(rows, allow_missing=True)
    assert kept == rows[:1]
    assert report.missing == [str(tmp_path / "gone.png")] and report.unreadable[0][0] == str(broken)

def test_esc50_importer_counts_absent_folds(esc50_root, caplog):
    rows = importers.esc50(esc50_root)
    assert len(rows) == 2000 and len({r.label for r in rows}) == 50
    with pytest.raises(InputError, match="1600 of 2000 manifest row"):
        check_audio(rows, probe=False)
    kept, report = check_audio(rows, allow_missing=True, probe=False)
    assert len(kept) == 400 and len(report.missing) == 1600
    assert not any("no row is marked for training" in r.getMessage() for r in caplog.records)
    fold1 = importers.esc50(esc50_root, folds=[1], val_folds=[1])
    assert len(fold1) == 400 and {r.split for r in fold1} == {"val"}
    assert any("no row is marked for training" in r.getMessage() for r in caplog.records)  # a --val manifest only
    assert "chirping birds" in {r.label for r in fold1}  # underscores become words
    kept, _ = check_audio(fold1[:5])
    assert len(kept) == 5


def test_urbansound_vggsound_audioset_folder(esc50_root, tmp_path):
    clips = sorted((esc50_root / "audio").iterdir())[:4]
    # UrbanSound8K layout
    us = tmp_path / "us8k"
    (us / "metadata").mkdir(parents=True)
    (us / "audio" / "fold1").mkdir(parents=True)
    (us / "audio" / "fold1" / "a.flac").symlink_to(clips[0])
    (us / "metadata" / "UrbanSound8K.csv").write_text(
        "slice_file_name,fsID,start,end,salience,fold,classID,class\n"
        "a.flac,1,0,4,1,1,3,dog_bark\nb.flac,2,0,4,1,10,9,street_music\n")
    rows = importers.urbansound8k(us)
    assert [(r.label, r.split) for r in rows] == [("dog bark", "train"), ("street music", "val")]
    kept, report = check_audio(rows, allow_missing=True)
    assert len(kept) == 1 and report.missing == [str(us / "audio" / "fold10" / "b.flac")]
    # VGGSound: clip names from its download scripts, a full video with a window, a missing one
    vd = tmp_path / "vgg"
    vd.mkdir()
    (vd / "abc_000030.flac").symlink_to(clips[1])
    (vd / "fullvid.flac").symlink_to(clips[2])
    csv = tmp_path / "vggsound.csv"
    csv.write_text("abc,30,dog barking,train\nfullvid,12,rain,test\nnothere,5,siren,train\n")
    rows = importers.vggsound(csv, vd)
    assert rows[0].audio == str(vd / "abc_000030.flac") and rows[0].start is None
    assert rows[1].audio == str(vd / "fullvid.flac") and (rows[1].start, rows[1].duration) == (12.0, 10.0)
    assert rows[2].audio.endswith("nothere_000005.wav")
    with pytest.raises(InputError, match="1 missing"):
        check_audio(rows)
    # AudioSet: comment lines, quoted multi-label ids, ontology names
    onto = tmp_path / "ontology.json"
    onto.write_text(json.dumps([{"id": "/m/01", "name": "Dog"}, {"id": "/m/02", "name": "Bark"}]))
    seg = tmp_path / "seg.csv"
    seg.write_text('# header\n# YTID, start_seconds, end_seconds, positive_labels\nabc, 30.000, 40.000, "/m/01,/m/02"\n')
    (rows_as,) = importers.audioset(seg, onto, vd)
    assert rows_as.label == "dog" and rows_as.text == "the sound of dog and bark" and rows_as.audio.endswith("abc_000030.flac")
    # folder per class
    root = tmp_path / "classes"
    (root / "church_bells").mkdir(parents=True)
    (root / "church_bells" / "x.flac").symlink_to(clips[3])
    (root / "notes.txt").write_text("not a class")
    assert importers.folder(root) == [ManifestRow(audio=str(root / "church_bells" / "x.flac"), label="church bells")]


def test_sampler_shards_resumes_and_is_deterministic():
    single = EpochSampler(20, batch_size=8, grad_accum=2, seed=3)
    ranks = [EpochSampler(20, batch_size=8, grad_accum=2, rank=r, world_size=2, seed=3) for r in range(2)]
    for s in [single, *ranks]:
        s.set_epoch(1)
    one = list(single)
    two = [list(r) for r in ranks]
    assert single.steps_per_epoch == 2 and len(one) == 4  # 2 steps x 2 micro-batches, last 4 rows dropped
    # the global micro-batch is the same set whatever the number of ranks
    assert [sorted(a + b) for a, b in zip(*two)] == [sorted(m) for m in one]
    assert len({i for m in one for i in m}) == 16
    resumed = EpochSampler(20, batch_size=8, grad_accum=2, seed=3)
    resumed.set_epoch(1, start_step=1)
    assert list(resumed) == one[2:] and len(resumed) == 2
    other = EpochSampler(20, batch_size=8, grad_accum=2, seed=3)
    other.set_epoch(2)
    assert list(other) != one
    with pytest.raises(InputError, match="multiple of"):
        EpochSampler(20, batch_size=6, grad_accum=4)
    with pytest.raises(InputError, match="fewer than one batch"):
        EpochSampler(5, batch_size=8)


def test_cosine_cyclic_schedule():
    cfg = TrainConfig(epochs=4, cycle_epochs=2, schedule="cosine_cyclic", warmup_steps=0)
    f = [lr_factor(s, config=cfg, steps_per_epoch=5) for s in range(20)]
    assert f[0] == 1.0 and f[10] == 1.0  # restart every 2 epochs
    assert f[5] == pytest.approx(0.5) and f[9] < f[8] < f[5]
    warm = TrainConfig(epochs=1, schedule="cosine", warmup_steps=4)
    assert [lr_factor(s, config=warm, steps_per_epoch=10) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(7, config=warm, steps_per_epoch=10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.7)))


def test_paper_and_fast_presets():
    paper = TrainConfig.preset("paper")
    assert (paper.encoder.arch, paper.optimizer, paper.lr, paper.momentum, paper.weight_decay, paper.batch_size,
            paper.epochs, paper.schedule) == ("resnet50", "sgd", 1e-3, 0.9, 1e-4, 384, 50, "cosine_cyclic")
    assert paper.logit_scale == pytest.approx(1 / 0.07) and paper.encoder.audio.n_mels == 128
    fast = TrainConfig.preset("fast")
    assert fast.optimizer == "adamw" and fast.encoder.arch == "resnet18"
    with pytest.raises(ValueError, match="paper"):
        TrainConfig.preset("slow")
