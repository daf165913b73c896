"""The Editor facade, targets, sources, mixing, presets and saved outputs.

Models are tiny seeded checkpoints in their real layouts (rosinality generator,
OpenAI-layout CLIP, our clean audio encoder), loaded through the public loaders.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from soundedit.config import EditConfig
from soundedit.editing import (PRESETS, Editor, build_target, default_layers, interpolate, parse_layers,
                               preset_settings, resolve_source, style_mix)
from soundedit.editing.report import MIX_OUTPUTS, OUTPUTS
from soundedit.editing.sources import load_latent
from soundedit.errors import InputError
from soundedit.models import load_audio_encoder, load_clip_space, load_generator
from soundedit.testing.clip import write_tiny_audio_encoder, write_tiny_openai_clip
from soundedit.testing.generators import write_tiny_generator

SIREN = "1-31482-A-42.flac"
THUNDER = "1-101296-A-19.flac"
RAIN = "1-17367-A-10.flac"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {
        "generator": write_tiny_generator(d / "g.pt", size=32, style_dim=32, max_channels=16),
        "clip": write_tiny_openai_clip(d / "clip.pt", image_size=32, patch_size=16, width=64, layers=1),
        "encoder": write_tiny_audio_encoder(d / "enc.safetensors", arch="resnet10t"),
    }


@pytest.fixture(scope="module")
def editor(files):
    G = load_generator(files["generator"])
    clip = load_clip_space(files["clip"], audio_encoder=load_audio_encoder(files["encoder"]))
    return Editor(G, clip, names={"generator": "landscape-256"})


@pytest.fixture(scope="module")
def sounds(esc50_root):
    return {k: esc50_root / "audio" / v for k, v in (("siren", SIREN), ("thunder", THUNDER), ("rain", RAIN))}


@pytest.mark.parametrize("seed", [0, 3])
def test_sound_guided_edit_moves_towards_the_sound(editor, sounds, seed):
    r = editor.edit(audio=sounds["siren"], source=seed, steps=20, lambda_sim=0.002)
    clip_hist = r.history["clip"][:, 0]
    assert clip_hist[-5:].mean() < clip_hist[:5].mean() - 0.005
    assert r.metrics["target_cosine"].item() > r.metrics["source_target_cosine"].item()
    assert r.meta["label"] == [SIREN] and r.meta["source"][0] == {"kind": "seed", "seed": seed, "truncation": 0.7}
    assert r.settings["preset"] == "scenes" and r.settings["lambda_id"] == 0.0


def test_targets_sound_mix_gains_and_text_combination(editor, sounds):
    clip = editor.clip_space
    thunder, _ = build_target(clip, audio=sounds["thunder"])
    rain, _ = build_target(clip, audio=sounds["rain"])
    storm, info = build_target(clip, audio=[sounds["thunder"], sounds["rain"]], gains_db=[0.0, -10.0])
    swapped, _ = build_target(clip, audio=[sounds["thunder"], sounds["rain"]], gains_db=[-10.0, 0.0])
    assert info["gains_db"] == [0.0, -10.0] and info["label"] == f"{THUNDER} + {RAIN}"
    for t in (thunder, rain, storm, swapped):
        assert t.shape == (1, clip.embed_dim) and t.norm().item() == pytest.approx(1.0, abs=1e-5)
    # the mix is its own sound, and the gains matter
    assert not torch.allclose(storm, swapped, atol=1e-4)
    assert not torch.allclose(storm, thunder, atol=1e-4)
    text, _ = build_target(clip, text="heavy rain")
    both, info = build_target(clip, audio=sounds["rain"], text="heavy rain", audio_weight=1.0, text_weight=3.0)
    expected = torch.nn.functional.normalize(rain + 3 * text, dim=-1)
    torch.testing.assert_close(both, expected)
    assert info["weights"] == {"audio": 1.0, "text": 3.0}
    with pytest.raises(InputError, match="--gain"):
        build_target(clip, audio=[sounds["thunder"], sounds["rain"]], gains_db=[0.0])
    with pytest.raises(InputError, match="neither"):
        build_target(clip)
    with pytest.raises(InputError, match=r"--text: expected a prompt, got '  '"):
        build_target(clip, text="  ")


@pytest.fixture(scope="module")
def authors_space(files, tmp_path_factory):
    enc = write_tiny_audio_encoder(tmp_path_factory.mktemp("authors") / "resnet18_57.pth", layout="official")
    return load_clip_space(files["clip"], audio_encoder=load_audio_encoder(enc))


def test_a_guiding_sound_reaches_the_authors_encoder_as_their_transform_prepares_the_file(
        authors_space, sounds, formats_dir):
    """Edits (build_target) feed the authors' encoder exactly what official_model_input makes of the file,
    as embed/classify do: for a 16 kHz ESC-50 clip the torchaudio resampler instead of librosa's
    kaiser_best changed the model input by up to 0.5 (of 1)."""
    from soundedit.audio import official_model_input
    from soundedit.editing.targets import load_sound

    for path in (sounds["rain"], formats_dir / "cat.mp3"):  # 16 kHz, and 48 kHz stereo-or-mono mp3
        prepared = authors_space.audio_encoder.prepare(load_sound(authors_space, [path]))
        assert torch.equal(prepared, official_model_input(path)), path
        target, _ = build_target(authors_space, audio=path)
        torch.testing.assert_close(target, authors_space.embed_audio(path), rtol=0, atol=1e-6)
    mixed, _ = build_target(authors_space, audio=[sounds["rain"], sounds["thunder"]], gains_db=[0.0, -6.0])
    assert mixed.shape == (1, authors_space.embed_dim) and torch.isfinite(mixed).all()


def test_a_too_short_sound_is_refused_by_the_library_too(editor, tmp_path):
    import soundfile as sf

    from soundedit.audio import Waveform

    blip = Waveform(torch.full((1, 441), 0.1), 44100)  # 10 ms
    with pytest.raises(InputError, match=r"--sound 1: 10.0 ms of audio; expected at least 0.1 s"):
        build_target(editor.clip_space, audio=blip)
    sf.write(tmp_path / "blip.wav", blip.samples[0].numpy(), 44100)
    with pytest.raises(InputError, match=r"expected at least 0.1 s"):
        editor.edit(audio=tmp_path / "blip.wav", source=0, steps=1)


def test_mix_takes_exactly_the_requested_layers(editor, sounds):
    n = editor.generator.n_latent
    m = editor.mix(audio=sounds["siren"], text="blue background", source=1, steps=4, interpolate=3)
    sound_code, text_code = m.edits.w_plus[0:1], m.edits.w_plus[1:2]
    split = round(n * 9 / 18)
    assert m.layers == ["sound"] * split + ["text"] * (n - split)
    assert torch.equal(m.w_plus[:, :split], sound_code[:, :split])
    assert torch.equal(m.w_plus[:, split:], text_code[:, split:])
    assert m.interpolation.shape == (3, 3, 32, 32)
    torch.testing.assert_close(m.interpolation[0:1], m.edits.image[0:1], atol=1e-5, rtol=0)
    torch.testing.assert_close(m.interpolation[2:3], m.edits.image[1:2], atol=1e-5, rtol=0)
    # explicit ranges; unnamed layers keep the source code
    m2 = editor.mix(audio=sounds["siren"], text="blue background", source=1, steps=2, layers="1-2:text,5-6:sound")
    assert m2.layers[:2] == ["text", "text"] and m2.layers[4:6] == ["sound", "sound"]
    assert torch.equal(m2.w_plus[:, 2:4], m2.edits.w_source[0:1, 2:4])


def test_mix_interpolation_and_target_weights_are_checked_before_the_edits(editor, sounds, monkeypatch, tmp_path):
    monkeypatch.setattr(editor, "edit_many", lambda *a, **k: pytest.fail("the edits ran"))
    with pytest.raises(InputError, match="--interpolate: expected 0 or 2 to 100 frames, got 100000"):
        editor.mix(audio=sounds["siren"], text="sky", source=1, steps=1, interpolate=100000)
    # several codes (found only after both edits had run): N W codes (N, D), N W+ codes in a file
    n, d = editor.generator.n_latent, editor.generator.style_dim
    with pytest.raises(InputError, match=r"mix source: the code holds 3 codes for this generator \(shape \(3, "
                                         r"32\)\); expected one code \(a mix edits one source\)"):
        editor.mix(audio=sounds["siren"], text="sky", source=torch.randn(3, d), steps=1)
    torch.save(torch.randn(2, n, d), tmp_path / "two.pt")
    with pytest.raises(InputError, match=r"mix source: latent .*two.pt' holds 2 codes"):
        editor.mix(audio=sounds["siren"], text="sky", source=tmp_path / "two.pt", steps=1)
    monkeypatch.undo()
    with pytest.raises(InputError, match="audio_weight: expected a finite number >= 0, got nan"):
        editor.edit(audio=sounds["siren"], text="sky", source=1, steps=1, audio_weight=float("nan"))
    with pytest.raises(InputError, match="--text: expected a prompt, got ' '"):
        editor.edit(text=" ", source=1, steps=1)


def test_layer_ranges_scale_to_n_latent_and_reject_bad_specs():
    assert default_layers(18) == ["sound"] * 9 + ["text"] * 9
    assert default_layers(14) == ["sound"] * 7 + ["text"] * 7
    assert default_layers(10) == ["sound"] * 5 + ["text"] * 5
    assert parse_layers("1-9:sound,10-18:text", 18) == default_layers(18)
    assert parse_layers("3:text", 4) == ["source", "source", "text", "source"]
    for bad in ("1-9:sound,9-14:text", "0-3:sound", "1-15:sound", "1-3:music", "1-3"):
        with pytest.raises(InputError, match="--layers"):
            parse_layers(bad, 14)


def test_style_mix_and_interpolation_are_exact():
    torch.manual_seed(0)
    a, b, s = torch.randn(2, 6, 4), torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    mixed = style_mix({"sound": a, "text": b, "source": s}, ["sound", "text", "source", "sound", "text", "text"])
    for i, (code, layer) in enumerate([(a, 0), (b, 1), (s, 2), (a, 3), (b, 4), (b, 5)]):
        assert torch.equal(mixed[:, i], code[:, layer])
    path = interpolate(a, b, 5)
    assert path.shape == (5, 2, 6, 4)
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    torch.testing.assert_close(path[2], (a + b) / 2)
    with pytest.raises(InputError):
        interpolate(a, b, 1)


def test_presets_are_data_and_overridable(editor):
    assert dict(PRESETS["faces"]) == {"lambda_sim": 0.008, "lambda_id": 0.004}
    assert dict(PRESETS["scenes"]) == {"lambda_sim": 0.002, "lambda_id": 0.0}
    assert dict(PRESETS["art"]) == dict(PRESETS["scenes"])
    assert preset_settings("faces", lambda_sim=0.02) == {"lambda_sim": 0.02, "lambda_id": 0.004}
    with pytest.raises(InputError, match="--preset"):
        preset_settings("portraits")
    cfg, _ = editor.settings()
    assert (cfg.preset, cfg.lambda_sim, cfg.lambda_id) == ("scenes", 0.002, 0.0)
    cfg, _ = editor.settings(preset="faces", lambda_id=0.0)
    assert (cfg.lambda_sim, cfg.lambda_id) == (0.008, 0.0)
    with pytest.raises(InputError, match="unknown settings"):
        editor.settings(lamda_sim=1.0)


def test_sources_seed_latent_files_free_and_photo_hook(editor, tmp_path, monkeypatch):
    G = editor.generator
    n, d = G.n_latent, G.style_dim
    a, b = resolve_source(G, 5), resolve_source(G, 5)
    assert torch.equal(a.w_plus, b.w_plus) and a.w_plus.shape == (1, n, d)
    assert not torch.equal(a.w_plus, resolve_source(G, 6).w_plus)
    w = torch.randn(d)
    torch.save(w, tmp_path / "w.pt")
    np.save(tmp_path / "wplus.npy", torch.randn(1, n, d).numpy())
    torch.save({"w_plus": torch.randn(n, d)}, tmp_path / "ours.pt")
    assert torch.equal(load_latent(tmp_path / "w.pt", n_latent=n, style_dim=d), w.view(1, 1, d).expand(1, n, d))
    assert load_latent(tmp_path / "wplus.npy", n_latent=n, style_dim=d).shape == (1, n, d)
    assert resolve_source(G, str(tmp_path / "ours.pt")).info["kind"] == "latent"
    torch.save(torch.randn(3, 7), tmp_path / "bad.pt")
    with pytest.raises(InputError, match=r"bad\.pt.*got shape \(3, 7\)"):
        load_latent(tmp_path / "bad.pt", n_latent=n, style_dim=d)
    with pytest.raises(InputError, match="does not exist"):
        load_latent(tmp_path / "missing.pt", n_latent=n, style_dim=d)
    torch.save(torch.zeros(0, n, d), tmp_path / "empty.pt")
    with pytest.raises(InputError, match=r"empty\.pt: expected at least one code, got an empty tensor"):
        load_latent(tmp_path / "empty.pt", n_latent=n, style_dim=d)
    nan = torch.randn(1, n, d)
    nan[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="source: expected finite numbers, got 1 NaN/inf value"):
        resolve_source(G, nan)
    with pytest.raises(InputError, match="seed: expected an integer from 0 to"):
        resolve_source(G, 2**64)
    free = resolve_source(G, None, free=True)
    assert free.free and torch.allclose(free.w_plus[0, 0], G.mean_latent())
    photo = tmp_path / "face.png"
    photo.write_bytes(b"not really a png")
    import soundedit.inversion

    monkeypatch.delattr(soundedit.inversion, "invert_image", raising=False)
    with pytest.raises(InputError, match="photo sources need the inversion module"):
        resolve_source(G, str(photo))
    calls = []

    def fake_invert(path, *, generator):
        calls.append(path)
        return torch.zeros(1, n, d)

    monkeypatch.setattr(soundedit.inversion, "invert_image", fake_invert, raising=False)
    src = resolve_source(G, str(photo))
    assert calls == [photo] and src.info == {"kind": "photo", "path": str(photo)}


def test_saved_outputs_exist_decode_and_report_is_complete(editor, sounds, tmp_path):
    from PIL import Image

    r = editor.edit(audio=sounds["siren"], text="red sky", source=2, steps=6, frame_every=2)
    paths = r.save(tmp_path / "out")
    for name in ("source.png", "edited.png", "comparison.png", "gates.png"):
        with Image.open(tmp_path / "out" / name) as im:
            im.load()
    with Image.open(paths["comparison"]) as im:
        assert im.width == 64 and im.height > 32  # two panels and a caption strip
    with Image.open(paths["progress"]) as im:
        assert im.n_frames == 4  # steps 0, 2, 4 and the final image
    saved = torch.load(paths["w_plus"], weights_only=True)
    assert torch.equal(saved["w_plus"], r.w_plus)
    report = json.loads(paths["report"].read_text())
    for key in ("versions", "settings", "label", "source", "target", "final_losses", "metrics", "gates",
                "layer_weights", "models", "outputs"):
        assert key in report, key
    assert report["target"]["text"] == "red sky" and report["target"]["sounds"] == [str(sounds["siren"])]
    assert set(report["final_losses"]) == {"clip", "sim", "id", "total"}
    assert len(report["gates"]) == editor.generator.n_latent
    assert {"target_cosine", "source_cosine", "source_target_cosine"} <= set(report["metrics"])
    assert not list((tmp_path / "out").glob("*.part"))


def test_batched_edit_many_saves_one_folder_per_item(editor, sounds, tmp_path):
    r = editor.edit_many([{"audio": sounds["siren"], "source": 0}, {"text": "rain", "source": 1}], steps=3)
    assert len(r) == 2 and r.meta["label"] == [SIREN, "'rain'"]
    r.save(tmp_path)
    assert json.loads((tmp_path / "item-001" / "report.json").read_text())["label"] == "'rain'"


def test_a_save_replaces_every_earlier_result_in_the_folder_whatever_its_kind(editor, sounds, tmp_path):
    """A mix saved where an edit was left the edit's images beside the mix's report; files that are not
    a result's stay (a photo's inversion/ too: it may be the next run's source), and `keep` spares an
    earlier result's entry (the item folder holding the code this run started from)."""
    out = tmp_path / "out"
    edit = editor.edit(audio=sounds["siren"], source=2, steps=2)
    edit.save(out)
    (out / "inversion").mkdir()
    (out / "inversion" / "w_plus.pt").write_text("a photo's code")
    (out / "notes.txt").write_text("mine")
    (out / "item-001").mkdir()
    mix = editor.mix(audio=sounds["siren"], text="red sky", source=2, steps=2)
    mix.save(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(["inversion", "notes.txt", *mix_outputs_without_frames()])
    (out / "item-001").mkdir()
    (out / "item-002").mkdir()
    edit.save(out, keep=("item-001",))
    assert sorted(p.name for p in out.iterdir()) == sorted(["inversion", "item-001", "notes.txt", *OUTPUTS.values()])


def mix_outputs_without_frames() -> list[str]:
    return [name for key, name in MIX_OUTPUTS.items() if key != "interpolation"]


def test_identity_requested_without_a_network_is_a_clear_error(editor):
    with pytest.raises(InputError, match="identity"):
        editor.edit(text="smile", source=0, steps=1, preset="faces")


@pytest.mark.slow
def test_identity_term_keeps_the_face(files, tmp_path):
    """With the seeded full-size IR-SE50, λ_ID > 0 keeps R-cosine to the source higher than λ_ID = 0."""
    from soundedit.testing.generators import write_seeded_identity_net

    ident = write_seeded_identity_net(tmp_path / "model_ir_se50.pth", seed=0)
    G = load_generator(files["generator"])
    clip = load_clip_space(files["clip"])
    ed = Editor(G, clip, identity=str(ident), config=EditConfig(steps=6, lr=0.1, preset="faces", lambda_sim=0.0))
    with_id = ed.edit(text="an old man", source=4, lambda_id=2.0)
    without = ed.edit(text="an old man", source=4, lambda_id=0.0)  # the net is loaded now: reported, not used
    assert "identity_cosine" in with_id.metrics and "identity_cosine" in without.metrics
    assert with_id.metrics["identity_cosine"].item() > without.metrics["identity_cosine"].item()
    assert with_id.history["id"][-1, 0] > 0


@pytest.fixture
def stand_in_photo(editor, tmp_path, monkeypatch):
    """``(photo path, calls)``: a photo source whose inversion is replaced; ``calls`` logs (path, kwargs)."""
    import soundedit.inversion

    photo = tmp_path / "photo.png"
    photo.write_bytes(b"stand-in; the inversion below is replaced")
    G = editor.generator
    calls = []

    def fake_invert(path, *, generator, **kwargs):
        calls.append((path, kwargs))
        return torch.randn(1, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(0))

    monkeypatch.setattr(soundedit.inversion, "invert_image", fake_invert, raising=False)
    return str(photo), calls


@pytest.mark.parametrize("preset, aligned", [("faces", True), ("scenes", False)])
def test_photo_source_is_face_aligned_only_for_face_presets(editor, sounds, stand_in_photo, preset, aligned):
    photo, calls = stand_in_photo
    editor.edit(audio=sounds["siren"], source=photo, steps=1, preset=preset, lambda_id=0.0)
    assert [kwargs for _, kwargs in calls] == [{"align": aligned}]


def test_mix_inverts_its_photo_once(editor, sounds, stand_in_photo):
    # Both halves of a mix edit the same photo: one inversion serves both.
    photo, calls = stand_in_photo
    m = editor.mix(audio=sounds["siren"], text="blue background", source=photo, steps=1)
    assert len(calls) == 1
    assert m.edits.w_source.shape[0] == 2 and torch.equal(m.edits.w_source[0], m.edits.w_source[1])
