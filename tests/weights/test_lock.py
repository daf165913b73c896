"""weights.lock: the real file parses and is complete; malformed entries are named precisely."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from soundedit.errors import InputError
from soundedit.weights.lock import load_lock, packaged_lock_path, parse_lock, pin_entry

REPO = Path(__file__).resolve().parents[2]
CONTRACT_NAMES = {"landscape-256", "authors-resnet18", "clip-vit-b-32", "ffhq-1024", "ffhq-1024-nvidia",
                  "church-256", "ir-se50", "e4e-ffhq"}


@pytest.fixture(scope="module")
def real_lock():
    return load_lock(REPO / "weights.lock")


def test_real_lock_has_every_contract_name(real_lock):
    assert CONTRACT_NAMES <= set(real_lock.entries)


def test_every_entry_is_complete(real_lock):
    for e in real_lock:
        assert e.file and "/" not in e.file, e.name
        assert e.urls and all(u.startswith(("https://", "http://")) for u in e.urls), e.name
        assert e.layout and e.licence and e.description, e.name
        assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256), e.name
        assert e.size is None or e.size > 0, e.name


def test_known_facts_of_the_real_lock(real_lock):
    clip = real_lock.get("clip-vit-b-32")
    # OpenAI publishes each CLIP file under its own sha256.
    assert clip.sha256 == "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
    for e in real_lock:
        if e.layout == "openai-clip-pt":
            assert e.urls[0].split("/")[-2] == e.sha256
    assert real_lock.get("landscape-256").urls == ("https://kr.object.ncloudstorage.com/cvpr2022/landscape.pt",)
    assert real_lock.get("authors-resnet18").urls == ("https://kr.object.ncloudstorage.com/cvpr2022/resnet18_57.pth",)
    assert real_lock.get("ffhq-1024").layout == "rosinality-stylegan2-pt"
    assert real_lock.get("church-256").layout == "nvidia-stylegan2-pkl"
    assert real_lock.get("ir-se50").layout == "treb1en-irse50-pth"


def test_packaged_copy_matches_the_top_level_file():
    assert packaged_lock_path().read_text() == (REPO / "weights.lock").read_text(), \
        "soundedit/weights/weights.lock must be a copy of the top-level weights.lock (cp weights.lock soundedit/weights/)"


GOOD = """version = 1
[weights.thing]
file = "thing.pt"
urls = ["https://example.org/thing.pt"]
sha256 = "unknown"
size = "unknown"
layout = "rosinality-stylegan2-pt"
licence = "MIT"
description = "a thing"
"""


@pytest.mark.parametrize(("old", "new", "expected"), [
    ('sha256 = "unknown"', 'sha256 = "abc"', r"entry 'thing': field 'sha256' must be 64 lower-case hex"),
    ('size = "unknown"', "size = -3", r"entry 'thing': field 'size' must be a positive byte count"),
    ('urls = ["https://example.org/thing.pt"]', 'urls = ["ftp://x"]', r"entry 'thing': field 'urls'"),
    ('urls = ["https://example.org/thing.pt"]', "urls = []", r"entry 'thing': field 'urls'"),
    ('licence = "MIT"\n', "", r"entry 'thing': missing field\(s\) licence"),
    ('licence = "MIT"', 'licence = "MIT"\nlicense = "MIT"', r"entry 'thing': unknown field\(s\) license"),
    ('file = "thing.pt"', 'file = "../thing.pt"', r"entry 'thing': field 'file' must be a plain file name"),
    ('layout = "rosinality-stylegan2-pt"', 'layout = ""', r"entry 'thing': field 'layout'"),
    ("version = 1", "version = 2", r"expected 'version = 1'"),
    ("[weights.thing]", "[weights.Thing]", r"entry 'Thing': names must be lower-case"),
    ('description = "a thing"', 'description = "a thing', r"not valid TOML"),
])
def test_malformed_entries_name_the_entry_and_field(old, new, expected):
    assert old in GOOD
    with pytest.raises(InputError, match=expected):
        parse_lock(GOOD.replace(old, new), path=Path("my.lock"))


def test_unknown_name_suggests_close_matches():
    lock = parse_lock(GOOD, path=Path("my.lock"))
    with pytest.raises(InputError, match=r"unknown weights name 'thinG'.*did you mean: thing"):
        lock.get("thinG")


def test_lock_override_must_exist(monkeypatch, tmp_path):
    from soundedit.weights.lock import lock_path

    monkeypatch.setenv("SOUNDEDIT_WEIGHTS_LOCK", str(tmp_path / "nope.lock"))
    with pytest.raises(InputError, match="SOUNDEDIT_WEIGHTS_LOCK"):
        lock_path()


def test_pin_rewrites_only_the_two_fields(tmp_path):
    path = tmp_path / "w.lock"
    path.write_text("# keep me\n" + GOOD + "\n[weights.other]  # another\n" + GOOD.split("\n", 2)[2])
    pin_entry("other", "ab" * 32, 1234, path=path)
    lock = load_lock(path)
    assert lock.get("other").sha256 == "ab" * 32 and lock.get("other").size == 1234
    assert lock.get("thing").sha256 is None  # the other table is untouched
    assert path.read_text().startswith("# keep me\n") and "[weights.other]  # another" in path.read_text()
    with pytest.raises(InputError, match="64 lower-case hex"):
        pin_entry("other", "xyz", 1, path=path)


def test_installed_package_falls_back_to_the_packaged_copy(monkeypatch):
    from soundedit.weights import lock as lock_module

    monkeypatch.delenv("SOUNDEDIT_WEIGHTS_LOCK", raising=False)
    assert lock_module.lock_path() == REPO / "weights.lock"  # running from this checkout
    monkeypatch.setattr(lock_module, "checkout_lock_path", lambda: None)
    assert lock_module.lock_path() == packaged_lock_path()
    assert CONTRACT_NAMES <= set(load_lock(lock_module.lock_path()).entries)


def test_importing_the_weights_package_is_light():
    import subprocess
    import sys

    code = "import sys, soundedit.weights; sys.exit(1 if 'torch' in sys.modules or 'urllib.request' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("command", [["weights", "list"], ["weights", "import", "ffhq-1024", "{file}"]])
def test_a_non_utf8_lock_override_is_named(monkeypatch, tmp_path, capsys, command):
    from soundedit.cli.main import main

    bad = tmp_path / "x.lock"
    bad.write_bytes(b"\xff\xfe")
    (tmp_path / "file.pt").write_bytes(b"x")
    monkeypatch.setenv("SOUNDEDIT_WEIGHTS_LOCK", str(bad))
    assert main([a.format(file=tmp_path / "file.pt") for a in command]) == 2
    err = capsys.readouterr().err
    assert "internal error" not in err
    assert "SOUNDEDIT_WEIGHTS_LOCK: expected a UTF-8 TOML weights.lock" in err and "x.lock" in err
