"""Every checkpoint loader refuses a file that is not a PyTorch checkpoint with one clear message.

torch.load of a small text file fails deep in its unpickler (``KeyError: 101``); the loaders
must say instead which file is not a checkpoint of which kind, and what it is.
"""

from __future__ import annotations

import zipfile

import pytest

from soundedit.errors import CheckpointError


def _loaders():
    from soundedit.inversion.e4e import load_e4e
    from soundedit.inversion.perceptual import vgg16_features_state
    from soundedit.models.audio_encoder import load_audio_encoder
    from soundedit.models.clip_space import load_clip_space
    from soundedit.models.identity import load_identity_net
    from soundedit.models.stylegan2.loading import load_generator

    return {
        "audio encoder": (load_audio_encoder, "an audio encoder checkpoint"),
        "CLIP": (load_clip_space, "a CLIP checkpoint"),
        "e4e": (load_e4e, "an e4e checkpoint"),
        "VGG16": (vgg16_features_state, "a torchvision VGG16 checkpoint"),
        "IR-SE50": (load_identity_net, "an IR-SE50 identity-net checkpoint"),
        "generator": (load_generator, "a StyleGAN2 generator"),
    }


@pytest.mark.parametrize("kind", ["audio encoder", "CLIP", "e4e", "VGG16", "IR-SE50", "generator"])
@pytest.mark.parametrize("content, got", [
    (b"hello, this is not a checkpoint\n", "got text ('hello, this is not a che'...)"),
    (b"Z\xdf\xf6x\x9e\xfb\x98{" + bytes(100), "got unrecognised data (first bytes b'Z\\xdf"),
])
def test_a_text_or_random_file_is_not_a_checkpoint(kind, content, got, tmp_path):
    load, what = _loaders()[kind]
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not {what}") and got in message, message
    assert "KeyError" not in message and len(message.splitlines()) == 1


@pytest.mark.parametrize("kind", ["audio encoder", "CLIP", "e4e", "VGG16", "IR-SE50", "generator"])
def test_a_damaged_zip_is_a_checkpoint_error(kind, tmp_path):
    load, what = _loaders()[kind]
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"cannot read {what}"):
        load(path)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_legacy_torch_files_load_or_are_refused_saying_why(protocol, tmp_path):
    """Pre-1.6 (non-zip) torch.save files: protocols 2 and 3 load without torch's protocol warning;
    4 and 5 are framed, which torch's safe loader cannot read: said so, not "objects other than tensors"."""
    import warnings

    import torch

    from soundedit.models.checkpoint import load_torch, sniff_file

    path = tmp_path / "old.pt"
    torch.save({"w": torch.arange(3.0)}, path, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    assert sniff_file(path) == "torch"
    if protocol <= 3:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert torch.equal(load_torch(path, what="a test checkpoint")["w"], torch.arange(3.0))
        return
    with pytest.raises(CheckpointError) as err:
        load_torch(path, what="a test checkpoint")
    assert str(err.value) == (f"{path}: cannot read a test checkpoint: a legacy (pre-zip) torch.save file in pickle "
                              f"protocol {protocol}, which torch's safe loader cannot read; save it again with a "
                              "current torch (torch.save writes zip files since 1.6)")


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_zip_torch_file_pickled_with_protocol_4_is_refused_saying_why(protocol, tmp_path):
    """torch.save(..., pickle_protocol=4) in the zip format: torch's safe loader stops at the FRAME opcode,
    which read as "holds objects other than tensors"."""
    import torch

    from soundedit.models.checkpoint import load_torch

    path = tmp_path / "new.pt"
    torch.save({"w": torch.arange(3.0)}, path, pickle_protocol=protocol)
    if protocol == 2:
        assert torch.equal(load_torch(path, what="a test checkpoint")["w"], torch.arange(3.0))
        return
    with pytest.raises(CheckpointError) as err:
        load_torch(path, what="a test checkpoint")
    assert str(err.value) == (f"{path}: cannot read a test checkpoint: a torch.save file pickled with protocol 4, "
                              "which torch's safe loader cannot read; save it again with torch.save's default protocol")
