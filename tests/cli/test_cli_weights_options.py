"""Every command's weights options (a weights.lock name or a checkpoint file) are checked before any
model loads, and a bad one is a one-line error naming the option as typed, what was expected and
what was got (the loaders only see the value: "'nonesuch' is neither an existing file nor ...")."""

from __future__ import annotations

import pytest
from PIL import Image

from soundedit.cli.main import main

SIREN = "1-31482-A-42.flac"
EXPECTED = "expected an existing checkpoint file or a weights.lock name, got"
NAMES = "; `soundedit weights list` shows the names"


@pytest.fixture
def inputs(esc50_root, tmp_path):
    """``{photo}``, ``{sound}``, ``{dir}``, ``{out}``, ``{manifest}`` and ``{jobs}``: inputs that pass every
    check before the weights'."""
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (120, 30, 200)).save(photo)
    manifest = tmp_path / "train.csv"
    manifest.write_text(f"audio,label\n{esc50_root / 'audio' / SIREN},siren\n")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"source,sound,label\n0,{esc50_root / 'audio' / SIREN},siren\n")
    return {"{photo}": str(photo), "{sound}": str(esc50_root / "audio" / SIREN), "{dir}": str(esc50_root),
            "{out}": str(tmp_path / "out"), "{manifest}": str(manifest), "{jobs}": str(jobs)}


@pytest.mark.parametrize("args, message", [
    (["edit", "--seed", "1", "--text", "red", "-g", "nonesuch"], f"--generator: {EXPECTED} 'nonesuch'{NAMES}"),
    (["edit", "--seed", "1", "--text", "red", "-g", "landscape256"],
     f"--generator: {EXPECTED} 'landscape256' (did you mean: landscape-256?){NAMES}"),
    (["edit", "--seed", "1", "--text", "red", "--clip", "{dir}"], f"--clip: {EXPECTED} '{{dir}}' (a folder)"),
    (["edit", "--seed", "1", "--text", "red", "--audio-encoder", "nope"], f"--audio-encoder: {EXPECTED} 'nope'{NAMES}"),
    # the identity net is checked when the edit uses it (the faces preset of the default generator does)
    (["edit", "--seed", "1", "--text", "red", "--identity", "nope"], f"--identity: {EXPECTED} 'nope'{NAMES}"),
    (["edit", "{photo}", "--text", "red", "--lpips", "/missing.pth"], f"--lpips: {EXPECTED} '/missing.pth'{NAMES}"),
    (["edit", "{photo}", "--text", "red", "--encoder", "e4e"],
     f"--encoder: {EXPECTED} 'e4e' (did you mean: e4e-ffhq?){NAMES}"),
    (["mix", "--sound", "{sound}", "--text", "red", "--clip", "nope"], f"--clip: {EXPECTED} 'nope'{NAMES}"),
    (["invert", "{photo}", "-g", "nonesuch"], f"--generator: {EXPECTED} 'nonesuch'{NAMES}"),
    (["invert", "{photo}", "--landmark-model", "/missing.dat"], f"--landmark-model: {EXPECTED} '/missing.dat'{NAMES}"),
    (["embed", "{sound}", "--json", "--encoder", "nope"], f"--encoder: {EXPECTED} 'nope'{NAMES}"),
    (["embed", "--text", "rain", "--json", "--clip", "nope"], f"--clip: {EXPECTED} 'nope'{NAMES}"),
    (["classify", "{sound}", "--labels", "dog,siren", "--encoder", "nope"], f"--encoder: {EXPECTED} 'nope'{NAMES}"),
    (["serve", "-g", "landscape-256", "-g", "nonesuch"], f"--generator: {EXPECTED} 'nonesuch'{NAMES}"),
    (["serve", "--identity", "nope"], f"--identity: {EXPECTED} 'nope'{NAMES}"),
    # after the manifest's audio is probed (a bad manifest is named first, as before)
    (["train", "--manifest", "{manifest}", "--out", "{out}", "--clip", "nope"], f"--clip: {EXPECTED} 'nope'{NAMES}"),
    (["weights", "convert", "nope", "{out}.safetensors"], f"IN: {EXPECTED} 'nope'{NAMES}"),
    (["eval", "zeroshot", "--root", "{dir}", "--folds", "1", "-e", "authors-resnet18", "-e", "nope"],
     f"--encoder: {EXPECTED} 'nope'{NAMES}"),
    (["eval", "zeroshot", "--root", "{dir}", "--folds", "1", "--clip", "nope"], f"--clip: {EXPECTED} 'nope'{NAMES}"),
    (["eval", "probe", "--root", "{dir}", "--folds", "1", "-e", "/missing.pt"],
     f"--encoder: {EXPECTED} '/missing.pt'{NAMES}"),
    (["eval", "table1", "--root", "{dir}", "--folds", "1", "--clip", "{dir}"],
     f"--clip: {EXPECTED} '{{dir}}' (a folder)"),
    (["eval", "edits", "--jobs", "{jobs}", "-g", "nonesuch"], f"--generator: {EXPECTED} 'nonesuch'{NAMES}"),
    (["eval", "edits", "--jobs", "{jobs}", "--identity", "nope"], f"--identity: {EXPECTED} 'nope'{NAMES}"),
])
def test_a_bad_weights_option_is_named(args, message, inputs, soundedit_home, capfd, monkeypatch):
    monkeypatch.setenv("SOUNDEDIT_OFFLINE", "1")
    args = [inputs.get(a, a) for a in args]
    for key, value in inputs.items():
        message = message.replace(key, value)
    code = main([*args, *(["--device", "cpu"] if args[0] in ("edit", "mix", "invert", "embed", "classify") else [])])
    err = capfd.readouterr().err.strip()
    assert code == 2 and err == f"error: {message}", err


def test_an_inversion_option_the_method_ignores_is_not_checked(inputs, soundedit_home, capfd, monkeypatch):
    """projection uses no e4e encoder, e4e no LPIPS network: a bad value there was refused all the same.
    The run gets as far as the first checkpoint it needs (the generator, not cached here)."""
    monkeypatch.setenv("SOUNDEDIT_OFFLINE", "1")
    for method, option in (("projection", "--encoder"), ("e4e", "--lpips")):
        code = main(["invert", inputs["{photo}"], "--method", method, option, "/missing.pt", "-g", "landscape-256",
                     "--device", "cpu"])
        err = capfd.readouterr().err.strip()
        assert code == 1 and err.startswith("error: weights 'landscape-256' (") and "/missing.pt" not in err, err


def test_an_unused_weights_option_is_not_checked(soundedit_home, capfd, monkeypatch):
    """λ_ID = 0: the identity net is never loaded, so its option is left alone (as before), and the run
    gets as far as the first checkpoint it needs (not cached here)."""
    monkeypatch.setenv("SOUNDEDIT_OFFLINE", "1")
    code = main(["edit", "--seed", "1", "--text", "red", "--identity", "nope", "--lambda-id", "0", "-g", "landscape-256",
                 "--device", "cpu"])
    err = capfd.readouterr().err.strip()
    assert code == 1 and err.startswith("error: weights 'landscape-256' (landscape.pt, ") and "nope" not in err, err
