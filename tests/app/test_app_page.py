"""The page built in-process (no browser): first run without weights names each missing file and how to get it."""

from __future__ import annotations

import html
import json

import pytest

pytest.importorskip("gradio", reason="gradio is not installed (app extra)")


def test_missing_weights_are_named_on_the_page(soundedit_home, monkeypatch, tmp_path):
    from soundedit.app.jobs import Workspace
    from soundedit.app.settings import AppSettings
    from soundedit.errors import WeightsMissingError
    from soundedit.weights import locate

    # what require_gradio sets, set here so the test leaves the environment as it found it
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SOUNDEDIT_OFFLINE", "1")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    from soundedit.app import build_app

    workspace = Workspace(tmp_path / "ws")
    demo, state = build_app(AppSettings(generators=["landscape-256"]), workspace=workspace)
    page = json.dumps(demo.config, default=str)
    for name in ("authors-resnet18", "clip-vit-b-32", "landscape-256"):
        with pytest.raises(WeightsMissingError) as err:
            locate(name)
        # the CLI's own message: why, where to download it, where to put it, the import command
        assert json.dumps(html.escape(str(err.value)))[1:-1] in page, name
    assert "Weights missing" in page and "No generator is available yet" in page
    assert len(state["cache"]) == 0  # nothing was loaded
    demo.close()
    workspace.remove()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The page over tiny seeded models (32 px, 8 W+ layers of 32) and its ``run`` endpoint as a function."""
    from soundedit.testing.clip import write_tiny_audio_encoder, write_tiny_openai_clip
    from soundedit.testing.generators import write_tiny_generator

    root = tmp_path_factory.mktemp("page")
    mp = pytest.MonkeyPatch()
    for key, value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"), ("SOUNDEDIT_OFFLINE", "1"),
                       ("GRADIO_TEMP_DIR", str(root / "gradio")), ("SOUNDEDIT_HOME", str(root / "home"))):
        mp.setenv(key, value)
    from soundedit.app import build_app
    from soundedit.app.jobs import Workspace
    from soundedit.app.settings import AppSettings

    g = write_tiny_generator(root / "g.pt", size=32, style_dim=32, max_channels=16)
    c = write_tiny_openai_clip(root / "clip.pt", image_size=32, patch_size=16, width=64, layers=1)
    e = write_tiny_audio_encoder(root / "enc.safetensors", arch="resnet10t")
    workspace = Workspace(root / "ws")
    demo, state = build_app(AppSettings(generators=[str(g)], audio_encoder=str(e), clip=str(c), identity=None,
                                        device="cpu", steps=2), workspace=workspace)
    run = next(f.fn for f in demo.fns.values() if f.name == "run")
    blocks = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}

    def status(kind="Random seed", seed=0, wplus=None, photo=None) -> str:
        """The page's last status after pressing Run (text prompt only, 2 steps)."""
        updates = list(run("g.pt", kind, seed, wplus, photo, None, None, -6, "a red car", 4, "auto", 2, 0.1, 0.0, 0.1,
                           [], None))
        return [u[blocks["status"]] for u in updates if blocks["status"] in u][-1]

    yield status, blocks, root
    demo.close()
    workspace.remove()
    mp.undo()


def test_multi_code_wplus_file_is_refused_on_the_page(page):
    import torch

    status, _, root = page
    torch.save(torch.randn(3, 8, 32), root / "w_three.pt")
    text = status("W+ file", wplus=str(root / "w_three.pt"))  # refused before the queue, not after the edit
    assert "se-error" in text and "W+ file: &#x27;w_three.pt&#x27; holds 3 codes (shape (3, 8, 32)); " \
                                  "expected one code" in text
    torch.save(torch.randn(2, 32), root / "w_two.pt")  # two W codes: known once the generator is loaded
    text = status("W+ file", wplus=str(root / "w_two.pt"))
    assert "se-error" in text and "holds 2 codes" in text
    torch.save(torch.randn(8, 16), root / "w_narrow.pt")  # not this generator's style_dim
    text = status("W+ file", wplus=str(root / "w_narrow.pt"))
    assert "W+ file &#x27;w_narrow.pt&#x27;: expected a W code" in text and "--latent" not in text
    torch.save(torch.full((8, 32), float("nan")), root / "w_nan.pt")
    text = status("W+ file", wplus=str(root / "w_nan.pt"))
    assert "W+ file w_nan.pt: expected finite numbers" in text and "--latent" not in text
    torch.save(torch.randn(1, 8, 32), root / "w_one.pt")
    assert "Done: 2 steps" in status("W+ file", wplus=str(root / "w_one.pt"))


def test_bad_photo_upload_is_named_on_the_page(page, monkeypatch):
    from gradio.data_classes import FileData
    from PIL import Image

    status, blocks, root = page
    (root / "notimg.png").write_text("not an image\n")
    # Gradio's own decoding would fail here with a bare "Error": the page takes the path and decodes it itself
    path = blocks["photo-upload"].preprocess(FileData(path=str(root / "notimg.png"), orig_name="notimg.png"))
    assert path == str(root / "notimg.png")
    text = status("Photo", photo=path)
    assert "se-error" in text and "photo" in text and "notimg.png" in text and str(root) not in text
    Image.new("RGB", (300, 300)).save(root / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 90 000 px is then a decompression bomb
    text = status("Photo", photo=blocks["photo-upload"].preprocess(FileData(path=str(root / "bomb.png"))))
    assert "se-error" in text and "photo" in text and "bomb.png" in text


@pytest.mark.parametrize("seed", [1.5, -1, float("nan")])
def test_seed_must_be_a_whole_number(page, seed):
    status, blocks, _ = page
    assert blocks["seed"].preprocess(seed) == seed or seed != seed  # no silent rounding by Gradio
    assert f"seed: expected an integer from 0 to {2**63 - 1}" in status("Random seed", seed=seed)
