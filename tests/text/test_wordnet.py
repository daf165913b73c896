"""Offline WordNet: install from Debian's files, load via NLTK_DATA, real synonyms, deterministic augmentation."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from soundedit.errors import InputError, SoundeditError
from soundedit.text import TextAugmentConfig, augment_text, label_to_prompt, synonyms
from soundedit.text.wordnet_data import DEBIAN_WORDNET, LEXNAMES, find_wordnet, install, lexnames_text, load_wordnet


@pytest.fixture(scope="module")
def nltk_data(tmp_path_factory):
    if not (DEBIAN_WORDNET / "index.sense").is_file():
        pytest.skip("Debian wordnet-base / wordnet-sense-index are not installed")
    root = tmp_path_factory.mktemp("nltk_data")
    subprocess.run([sys.executable, "-m", "soundedit.text.wordnet_data", "install", str(root)], check=True,
                   capture_output=True)
    return root


def test_lexnames_table_is_wordnet_30():
    assert len(LEXNAMES) == 45
    lines = lexnames_text().splitlines()
    assert lines[0] == "00\tadj.all\t3" and lines[3] == "03\tnoun.Tops\t1" and lines[44] == "44\tadj.ppl\t3"
    assert lines[43] == "43\tverb.weather\t2"


def test_install_is_idempotent_and_copies(nltk_data):
    folder = nltk_data / "corpora" / "wordnet"
    assert not (folder / "data.noun").is_symlink()
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    install(nltk_data)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_install_names_missing_debian_files(tmp_path):
    with pytest.raises(InputError, match="wordnet-sense-index"):
        install(tmp_path / "out", source=tmp_path)
    rc = subprocess.run([sys.executable, "-m", "soundedit.text.wordnet_data", "install", str(tmp_path / "o"),
                         "--source", str(tmp_path)], capture_output=True, text=True)
    assert rc.returncode == 2 and "apt-get install wordnet-base" in rc.stderr


def test_loader_finds_wordnet_through_nltk_data(nltk_data, monkeypatch):
    monkeypatch.setenv("NLTK_DATA", str(nltk_data))
    assert find_wordnet() == nltk_data / "corpora" / "wordnet"
    wn = load_wordnet()
    dog = wn.synsets("dog")[0]
    assert dog.name() == "dog.n.01" and dog.lexname() == "noun.animal"
    # index.sense (wordnet-sense-index) is wired up: sense keys resolve
    assert wn.lemma_from_key("dog%1:05:00::").synset() == dog


def test_missing_wordnet_is_a_clear_error(tmp_path, monkeypatch):
    import nltk.data

    monkeypatch.setenv("NLTK_DATA", str(tmp_path))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(SoundeditError, match="wordnet_data install"):
        find_wordnet()


def test_real_synonyms_offline(nltk_data):
    wn = load_wordnet(nltk_data / "corpora" / "wordnet")
    assert {"rainfall", "rain down"} <= set(synonyms("rain", wn))
    assert "automobile" in synonyms("car", wn)
    assert "car" not in synonyms("car", wn)


def test_augmentation_is_deterministic_and_uses_synonyms(nltk_data):
    wn = load_wordnet(nltk_data / "corpora" / "wordnet")
    only_replace = TextAugmentConfig(p_synonym_replace=1.0, p_synonym_insert=0, p_permute=0, p_random_insert=0)
    out = augment_text("heavy rain", rng=random.Random(3), config=only_replace, wordnet=wn)
    assert out != "heavy rain"
    # exactly one of the two words was replaced by one of its WordNet synonyms
    assert (out.startswith("heavy ") and out[6:] in synonyms("rain", wn)) or \
        (out.endswith(" rain") and out[:-5] in synonyms("heavy", wn))
    all_ops = TextAugmentConfig(1.0, 1.0, 1.0, 1.0)
    runs = [augment_text("the sound of heavy rain", rng=random.Random(7), config=all_ops, vocabulary=["siren"],
                         wordnet=wn) for _ in range(2)]
    assert runs[0] == runs[1]
    assert "siren" in runs[0].split() and len(runs[0].split()) >= 7
    many = {augment_text("the sound of heavy rain", rng=random.Random(s), config=all_ops, wordnet=wn) for s in range(20)}
    assert len(many) > 10


def test_zero_probabilities_leave_text_unchanged():
    off = TextAugmentConfig(0, 0, 0, 0)
    assert augment_text("a dog barks", rng=random.Random(0), config=off, vocabulary=["x"]) == "a dog barks"


def test_templates():
    assert label_to_prompt("chirping_birds") == "the sound of chirping birds"
    assert label_to_prompt("Siren", "a recording of {label}") == "a recording of Siren"
    with pytest.raises(ValueError, match="label"):
        label_to_prompt("dog", "no field")
