"""CLIP space: OpenAI-layout loading through open_clip, image/text/audio embeddings."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from soundedit.errors import CheckpointError, InputError
from soundedit.models import ClipSpace, load_audio_encoder, load_clip_space
from soundedit.models.clip_space import PHOTO_ENSEMBLE, PHOTO_TEMPLATES
from soundedit.testing.clip import seeded_image, write_tiny_audio_encoder, write_tiny_openai_clip


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    return write_tiny_openai_clip(tmp_path_factory.mktemp("clip") / "tiny.pt", seed=0)


@pytest.fixture(scope="module")
def space(clip_file):
    return load_clip_space(clip_file)


def _pil(img: torch.Tensor):
    from PIL import Image

    arr = ((img[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr)


def test_architecture_read_from_the_state_dict(space):
    assert isinstance(space, ClipSpace)
    assert space.image_size == (64, 64)  # patch 16 x grid 4, inferred from the positional embedding
    assert space.embed_dim == 512
    assert space.model.visual.conv1.weight.dtype == torch.float32  # fp16 file, fp32 model
    assert space.logit_scale == pytest.approx(1 / 0.07, rel=1e-3)


def test_frozen_and_eval(space):
    assert all(not p.requires_grad for p in space.model.parameters())
    space.train()
    assert not space.model.training


def test_jit_archive_loads_the_same_model(clip_file, space, tmp_path):
    jit_file = write_tiny_openai_clip(tmp_path / "tiny_jit.pt", seed=0, jit=True)
    other = load_clip_space(jit_file)
    for (k, a), (_, b) in zip(space.model.state_dict().items(), other.model.state_dict().items()):
        assert torch.equal(a, b), k
    assert other.image_size == space.image_size


def test_image_path_matches_open_clip_preprocessing(space):
    """Our tensor path vs open_clip's PIL transform on the same picture (cosine > 0.99)."""
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    transform = image_transform_v2(PreprocessCfg(**open_clip.get_model_preprocess_cfg(space.model)), is_train=False)
    for size in [(96, 128), (200, 150), (64, 64)]:
        img = seeded_image(1, max(size), seed=sum(size))[..., : size[0], : size[1]]
        with torch.no_grad():
            ref = F.normalize(space.model.encode_image(transform(_pil(img)).unsqueeze(0)), dim=-1)
            ours = space.embed_image(img)
            other = space.embed_image(seeded_image(1, max(size), seed=99)[..., : size[0], : size[1]])
            unnormalised = F.normalize(space.model.encode_image((space.image_input(img) * space.image_std
                                                                 + space.image_mean)), dim=-1)
        assert F.cosine_similarity(ours, ref).item() > 0.999, size
        # the check can fail: another picture or skipping CLIP's mean/std lands far away
        assert F.cosine_similarity(other, ref).item() < 0.98
        assert F.cosine_similarity(unnormalised, ref).item() < 0.98


def test_image_embedding_is_unit_norm_and_differentiable(space):
    img = seeded_image(2, 80, seed=3).requires_grad_(True)
    emb = space.embed_image(img)
    assert emb.shape == (2, space.embed_dim)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    target = space.embed_text(["rain"])
    (1 - (emb * target).sum(-1)).sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert torch.isfinite(img.grad).all()


def test_image_input_is_one_resize_and_centre_crop(space):
    # a 128x256 image: short side to 64 (-> 64x128), centre crop columns 32:96
    img = torch.linspace(-1, 1, 256).expand(1, 3, 128, 256).contiguous()
    x = space.image_input(img)
    assert x.shape == (1, 3, 64, 64)
    pixels = x * space.image_std + space.image_mean
    torch.testing.assert_close(pixels[0, 0, 0, 0], torch.tensor(0.25 + 0.5 / 128), atol=5e-3, rtol=0)


def test_bad_image_is_input_error(space):
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        space.embed_image(torch.zeros(3, 64, 64))


def test_text_shapes_norms_and_templates(space):
    emb = space.embed_text(["rain", "a dog barking", "thunder"])
    assert emb.shape == (3, space.embed_dim)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    assert (emb @ emb.T).fill_diagonal_(0).max() < 0.999  # different texts, different embeddings
    plain = space.embed_text(["rain"], templates=["{}"])
    torch.testing.assert_close(plain, emb[:1])  # default: the text as given
    photo = space.embed_text(["rain"], templates=PHOTO_TEMPLATES)
    assert (photo * plain).sum() < 0.999  # the template changes the prompt
    torch.testing.assert_close(space.embed_text(["rain"], templates=["a photo of {label}."]), photo)
    both = space.embed_text(["rain"], templates=["{}", "a photo of {}."])
    torch.testing.assert_close(both, F.normalize(plain + photo, dim=-1), atol=1e-5, rtol=1e-5)
    ensemble = space.embed_text(["rain", "thunder"], templates=PHOTO_ENSEMBLE)
    assert ensemble.shape == (2, space.embed_dim)
    torch.testing.assert_close(ensemble.norm(dim=-1), torch.ones(2))


def test_a_text_longer_than_the_context_is_said_to_be_cut(space, caplog):
    long = "a storm " * 60  # 120 words: past CLIP's 77 tokens
    with caplog.at_level("WARNING", logger="soundedit"):
        space.embed_text(["rain", long])
    cut = [r.getMessage() for r in caplog.records]
    assert len(cut) == 1 and "77-token context" in cut[0] and "a storm a storm" in cut[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="soundedit"):
        space.embed_text([" ".join(["dog"] * 75)])  # 75 tokens + start + end: fills the context exactly, uncut
    assert not caplog.records


@pytest.mark.parametrize("bad", [[], "rain", [1, 2]])
def test_bad_texts(space, bad):
    with pytest.raises(InputError, match="texts"):
        space.embed_text(bad)


def test_bad_template(space):
    for bad in (["no placeholder"], ["{} and {}"], "a photo of {}."):
        with pytest.raises(InputError, match="templates"):
            space.embed_text(["rain"], templates=bad)


def test_embed_audio_through_authors_layout_encoder(clip_file, tmp_path):
    enc_path = write_tiny_audio_encoder(tmp_path / "enc.pth", layout="official", seed=0)
    space = load_clip_space(clip_file, audio_encoder=enc_path)
    x = torch.randn(2, 1, 128, 512, generator=torch.Generator().manual_seed(0))
    emb = space.embed_audio(x)
    assert emb.shape == (2, space.embed_dim)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    with torch.no_grad():
        raw = load_audio_encoder(enc_path)(x)
    torch.testing.assert_close(emb, F.normalize(raw, dim=-1))


def test_embed_audio_needs_an_encoder(space):
    with pytest.raises(InputError, match="audio_encoder"):
        space.embed_audio(torch.zeros(1, 1, 128, 512))


def test_encoder_dim_must_match(clip_file, tmp_path):
    enc_path = write_tiny_audio_encoder(tmp_path / "enc.pth", layout="official", embed_dim=256)
    with pytest.raises(InputError, match="embed_dim 512"):
        load_clip_space(clip_file, audio_encoder=enc_path)


def test_not_a_clip_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not torch")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_clip_space(junk)
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="OpenAI's CLIP layout"):
        load_clip_space(other)


def test_wrong_shape_in_openai_layout(clip_file, tmp_path):
    state = torch.load(clip_file, weights_only=True)
    state["visual.ln_post.weight"] = torch.ones(32, dtype=torch.float16)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_clip_space(bad)


def test_open_clip_model_by_name_from_local_file_without_hub(tmp_path, monkeypatch):
    """Any open_clip architecture + a local checkpoint; the hub must not be contacted."""
    import open_clip
    import open_clip.pretrained

    def no_hub(*args, **kwargs):
        raise AssertionError("Hugging Face hub contacted")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_hf", no_hub)
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_url", no_hub)
    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", no_hub, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # a tiny config registered like any open_clip model config
    cfg = tmp_path / "soundedit-tiny-vit.json"
    cfg.write_text('{"embed_dim": 512, "quick_gelu": true,'
                   ' "vision_cfg": {"image_size": 48, "layers": 1, "width": 64, "patch_size": 16},'
                   ' "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1}}')
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    model = open_clip.create_model("soundedit-tiny-vit")
    weights = tmp_path / "tiny_open_clip.bin"
    torch.save(model.state_dict(), weights)
    space = load_clip_space(weights, model_name="soundedit-tiny-vit")
    assert "HF_HUB_OFFLINE" not in os.environ  # the offline switch is restored after loading
    assert space.image_size == (48, 48) and space.embed_dim == 512
    torch.testing.assert_close(space.model.visual.conv1.weight, model.visual.conv1.weight)
    assert space.embed_text(["rain"]).shape == (1, 512)
    assert space.embed_image(seeded_image(1, 64)).shape == (1, 512)
    with pytest.raises(InputError, match="model_name"):
        load_clip_space(weights, model_name="no-such-model")
