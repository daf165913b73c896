"""Audio encoders: the authors' layout (golden parity), our safetensors layout, bad files."""

from __future__ import annotations

import pytest
import torch

from soundedit.config import AudioConfig, EncoderConfig
from soundedit.errors import CheckpointError, InputError
from soundedit.models import AudioEncoder, load_audio_encoder
from soundedit.models.audio_encoder import build_audio_encoder, save_audio_encoder
from soundedit.testing.clip import write_tiny_audio_encoder

SMALL_AUDIO = AudioConfig(sample_rate=16000, n_fft=512, hop_length=256, n_mels=32, duration=1.0)


@pytest.fixture(scope="module")
def official(seeded_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("official") / "resnet18_57.pth"
    return seeded_checkpoint("official_audio_encoder", path)


def test_official_golden_parity(official):
    path, expected = official
    enc = load_audio_encoder(path)
    assert isinstance(enc, AudioEncoder)
    assert enc.config.layout == "official" and enc.config.arch == "resnet18" and enc.embed_dim == 512
    assert not enc.training
    with torch.no_grad():
        got = enc(expected["model_input"])
    assert got.shape == (1, 512)
    torch.testing.assert_close(got, expected["embedding"], rtol=1e-4, atol=1e-4)


def test_official_without_module_prefix(official, tmp_path):
    path, expected = official
    state = torch.load(path, weights_only=True)
    assert all(k.startswith("module.") for k in state)
    plain = tmp_path / "plain.pth"
    torch.save({k[len("module."):]: v for k, v in state.items()}, plain)
    with torch.no_grad():
        got = load_audio_encoder(plain)(expected["model_input"])
    torch.testing.assert_close(got, expected["embedding"], rtol=1e-4, atol=1e-4)


def test_official_conv_stem_has_no_padding(official):
    # The authors' Conv2d(1, 3, (3, 3)) uses PyTorch defaults: 128x512 -> 126x510.
    enc = load_audio_encoder(official[0])
    assert enc.conv(torch.zeros(1, 1, 128, 512)).shape == (1, 3, 126, 510)


def test_official_rejects_wrong_input_shape(official):
    enc = load_audio_encoder(official[0])
    with pytest.raises(InputError, match=r"\(N, 1, 128, 512\)"):
        enc(torch.zeros(1, 1, 128, 431))


def test_missing_key_is_named(official, tmp_path):
    state = torch.load(official[0], weights_only=True)
    del state["module.feature_extractor.layer2.0.bn1.running_mean"]
    bad = tmp_path / "missing.pth"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match=r"missing keys.*layer2\.0\.bn1\.running_mean") as err:
        load_audio_encoder(bad)
    assert str(bad) in str(err.value)


def test_wrong_shape_is_named(official, tmp_path):
    state = torch.load(official[0], weights_only=True)
    state["module.feature_extractor.fc.weight"] = torch.zeros(512, 256)
    bad = tmp_path / "shape.pth"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match=r"wrong shapes.*fc\.weight"):
        load_audio_encoder(bad)


def test_other_state_dict_is_refused(tmp_path):
    bad = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(CheckpointError, match="authors' layout"):
        load_audio_encoder(bad)


@pytest.mark.parametrize("payload", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated zip"])
def test_not_a_checkpoint(tmp_path, payload):
    bad = tmp_path / "junk.pth"
    bad.write_bytes(payload)
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_audio_encoder(bad)


def test_truncated_checkpoint(official, tmp_path):
    data = official[0].read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pth"):
        load_audio_encoder(bad)


def test_nonexistent_path_is_input_error(tmp_path, soundedit_home):
    with pytest.raises(InputError):
        load_audio_encoder(tmp_path / "nope.pth")


def test_clean_encoder_shapes_and_one_channel_stem():
    enc = build_audio_encoder(EncoderConfig(arch="resnet18", embed_dim=64, audio=SMALL_AUDIO)).eval()
    assert isinstance(enc.conv, torch.nn.Identity)
    assert enc.feature_extractor.conv1.in_channels == 1
    with torch.no_grad():
        out = enc(torch.randn(3, 1, 32, 63))
    assert out.shape == (3, 64)
    with pytest.raises(InputError, match="32 mel bins"):
        enc(torch.randn(1, 1, 128, 63))


def test_clean_roundtrip_is_self_describing(tmp_path):
    cfg = EncoderConfig(arch="resnet18", embed_dim=96, audio=SMALL_AUDIO)
    torch.manual_seed(3)
    enc = build_audio_encoder(cfg).eval()
    x = torch.randn(2, 1, 32, 40)
    path = save_audio_encoder(enc, tmp_path / "enc.safetensors")
    loaded = load_audio_encoder(path)
    assert loaded.config == cfg
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), enc(x))


def test_weights_run_channels_last_and_compute_what_contiguous_ones_do(official, tmp_path):
    """Every 4-D weight is channels-last (built, loaded from ours or the authors' file), the saved file
    holds plain tensors, and the outputs are those of the same weights in the default layout."""
    import copy

    path, expected = official
    cfg = EncoderConfig(arch="resnet18", embed_dim=96, audio=SMALL_AUDIO)
    built = build_audio_encoder(cfg).eval()
    saved = save_audio_encoder(built, tmp_path / "enc.safetensors")
    for enc, x in ((built, torch.randn(2, 1, 32, 40)), (load_audio_encoder(saved), torch.randn(2, 1, 32, 40)),
                   (load_audio_encoder(path), expected["model_input"])):
        convs = [p for p in enc.parameters() if p.ndim == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
                             for p in convs if p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1)  # else both at once
        plain = copy.deepcopy(enc).to(memory_format=torch.contiguous_format)
        with torch.no_grad():
            torch.testing.assert_close(enc(x), plain(x), rtol=1e-5, atol=1e-5)
    from safetensors import safe_open

    with safe_open(str(saved), "pt") as f:
        assert all(f.get_tensor(k).is_contiguous() for k in f.keys())


def test_safetensors_without_config_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "bare.safetensors"
    save_file({"feature_extractor.fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="EncoderConfig"):
        load_audio_encoder(path)


def test_pretrained_start_from_local_timm_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    imagenet = timm.create_model("resnet18")  # stands in for timm's ImageNet weights file
    weights = tmp_path / "resnet18.safetensors"
    save_file(imagenet.state_dict(), weights)
    enc = build_audio_encoder(EncoderConfig(arch="resnet18", embed_dim=32), pretrained_file=weights)
    # RGB stem summed into one channel; body copied; new 32-d head
    torch.testing.assert_close(enc.feature_extractor.conv1.weight, imagenet.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(enc.feature_extractor.layer3[1].conv2.weight, imagenet.layer3[1].conv2.weight)
    assert enc.feature_extractor.fc.weight.shape == (32, 512)


def test_pretrained_file_must_exist(tmp_path):
    with pytest.raises(InputError, match="pretrained_file"):
        build_audio_encoder(EncoderConfig(arch="resnet18"), pretrained_file=tmp_path / "missing.pth")


def test_unknown_arch_and_layout():
    with pytest.raises(InputError, match="no_such_resnet"):
        build_audio_encoder(EncoderConfig(arch="no_such_resnet"))
    with pytest.raises(ValueError, match="layout"):
        EncoderConfig(layout="scrambled")


@pytest.mark.parametrize(("layout", "arch"), [("clean", "resnet10t"), ("official", "resnet18")])
def test_tiny_writer_loads_through_public_loader(tmp_path, layout, arch):
    suffix = ".safetensors" if layout == "clean" else ".pth"
    paths = [write_tiny_audio_encoder(tmp_path / f"{name}{suffix}", layout=layout, arch=arch, seed=seed,
                                      audio=SMALL_AUDIO) for name, seed in (("a", 1), ("b", 1), ("c", 2))]
    a, b, c = (load_audio_encoder(p) for p in paths)
    assert a.config.layout == layout and a.config.arch == arch and a.embed_dim == 512
    for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), key  # same seed, same weights
    x = torch.randn(1, 1, 128, 512) if layout == "official" else torch.randn(1, 1, 32, 63)
    with torch.no_grad():
        assert not torch.allclose(a(x), c(x), atol=1e-3)  # another seed, another encoder


class _Payload:
    """Unpickling this would run a shell command (it must never happen)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_code_in_a_pickle_is_refused_without_running(tmp_path):
    from soundedit.models import load_clip_space

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"module.conv.weight": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_audio_encoder(evil)
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_clip_space(evil)
    assert not marker.exists()


def test_a_directory_is_not_a_checkpoint(tmp_path):
    from soundedit.models import load_clip_space

    with pytest.raises(InputError, match="directory"):
        load_audio_encoder(tmp_path)
    with pytest.raises(InputError, match="directory"):
        load_clip_space(tmp_path)
