"""Dataset layouts: ESC-50 / UrbanSound8K metadata, folder-per-class, missing files, folds."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from soundedit.errors import InputError
from soundedit.evaluation.datasets import Clip, load_dataset, read_labels_file, subsample


def test_esc50_fold1_reports_missing_and_selects_fold(esc50_root):
    ds = load_dataset(esc50_root)
    assert ds.name == "esc50"
    assert len(ds.classes) == 50 and ds.classes[0] == "dog" and "chirping birds" in ds.classes
    assert len(ds.clips) == 400 and len(ds.missing) == 1600
    assert ds.all_folds == [1, 2, 3, 4, 5] and ds.folds == [1]
    summary = ds.missing_summary()
    assert "1600 of 2000" in summary and "meta/esc50.csv" in summary and "folds 2,3,4,5 are entirely absent" in summary
    # every present clip's label agrees with the class-number suffix of the ESC-50 file name
    for clip in ds.clips:
        assert clip.path.is_file() and clip.target == int(clip.path.stem.rsplit("-", 1)[1])
        assert ds.classes[clip.target] == clip.label

    one = load_dataset(esc50_root, folds=[1])
    assert len(one.clips) == 400 and one.missing == []
    small = load_dataset(esc50_root, folds=[1], limit=50)
    assert len(small.clips) == 50 and len({c.target for c in small.clips}) == 50  # one per class
    with pytest.raises(InputError, match="folds 1,2,3,4,5; got 7"):
        load_dataset(esc50_root, folds=[7])


def _write_us8k(root: Path, wav_bytes: bytes) -> None:
    (root / "metadata").mkdir(parents=True)
    rows = [("a.wav", 1, 0, "air_conditioner"), ("b.wav", 1, 1, "car_horn"), ("c.wav", 2, 1, "car_horn"),
            ("d.wav", 3, 0, "air_conditioner")]
    with (root / "metadata" / "UrbanSound8K.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])
        for name, fold, cid, cls in rows:
            w.writerow([name, 1, 0, 1, 1, fold, cid, cls])
    for name, fold, *_ in rows[:3]:  # d.wav (fold 3) is absent
        (root / "audio" / f"fold{fold}").mkdir(parents=True, exist_ok=True)
        (root / "audio" / f"fold{fold}" / name).write_bytes(wav_bytes)


def test_urbansound8k_layout(tmp_path):
    _write_us8k(tmp_path, b"RIFF")
    ds = load_dataset(tmp_path)
    assert ds.name == "urbansound8k" and ds.classes == ["air conditioner", "car horn"]
    assert [(c.path.name, c.fold, c.target) for c in ds.clips] == [("a.wav", 1, 0), ("b.wav", 1, 1), ("c.wav", 2, 1)]
    assert [c.path.name for c in ds.missing] == ["d.wav"]
    assert load_dataset(tmp_path, folds=[1, 2]).missing == []


def test_folder_layouts(tmp_path):
    for cls in ("dog_bark", "rain"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "x.wav").write_bytes(b"RIFF")
    ds = load_dataset(tmp_path)
    assert ds.name == "folder" and ds.classes == ["dog bark", "rain"] and ds.labelled
    assert sorted((c.label, c.target) for c in ds.clips) == [("dog bark", 0), ("rain", 1)]
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.flac").write_bytes(b"fLaC")
    with pytest.raises(InputError, match="--labels"):
        load_dataset(flat)
    ds = load_dataset(flat, labels=["siren", "rain"])
    assert ds.classes == ["siren", "rain"] and not ds.labelled and ds.clips[0].target is None
    with pytest.raises(InputError, match="duplicates"):
        load_dataset(flat, labels=["car_horn", "car horn"])


def test_labels_file_and_subsample(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("# classes\ndog\n\nrain  # wet\n")
    assert read_labels_file(f) == ["dog", "rain"]
    with pytest.raises(InputError, match="does not exist"):
        read_labels_file(tmp_path / "nope.txt")
    clips = [Clip(Path(f"{i}.wav"), target=t) for i, t in enumerate([0, 0, 0, 1, 1, 2])]
    assert [c.path.name for c in subsample(clips, 4)] == ["0.wav", "1.wav", "3.wav", "5.wav"]
    with pytest.raises(InputError, match="--limit"):
        subsample(clips, 0)


def test_malformed_metadata_is_an_input_error(tmp_path):
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "esc50.csv").write_text("filename,fold,category\nx.wav,1,dog\n")
    with pytest.raises(InputError, match="missing target"):
        load_dataset(tmp_path)
    (tmp_path / "meta" / "esc50.csv").write_text("filename,fold,target,category\nx.wav,one,0,dog\n")
    with pytest.raises(InputError, match="row 2.*'fold'"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("text, message", [
    # rows longer than an unrelated header: the header is named, not a TypeError from sorting None
    ("a,b,c\nx.wav,1,0,dog,True,1,A\n",
     "esc50.csv: expected columns filename, fold, target, category; missing filename, fold, target, category "
     "(got a, b, c)"),
    ("", "esc50.csv: expected columns filename, fold, target, category; missing filename, fold, target, category "
         "(got an empty file)"),
    ("filename,fold,target,category\n", "esc50.csv: expected one row per clip under the header, got no rows"),
    ("filename,fold,target,category\nx.wav,1,0,dog\ny.wav,1\n",
     "esc50.csv: row 3: expected 4 cells (one per header column), got 2"),
    ("filename,fold,target,category\nx.wav,1,0,dog,extra\n",
     "esc50.csv: row 2: expected 4 cells (one per header column), got 5"),
])
def test_esc50_metadata_with_wrong_columns_names_the_file_and_columns(tmp_path, text, message):
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "esc50.csv").write_text(text)
    with pytest.raises(InputError) as err:
        load_dataset(tmp_path)
    assert str(err.value) == f"{tmp_path / 'meta' / message}"
