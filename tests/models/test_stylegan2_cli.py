"""``soundedit weights convert``: NVIDIA / rosinality files to our safetensors, through the CLI entry point."""

from __future__ import annotations

import json

import torch

from soundedit.cli.main import main
from soundedit.models import load_generator
from soundedit.testing.generators import seeded_generator, write_nvidia_pickle


def test_convert_pickle_to_safetensors(tmp_path, capsys):
    G = seeded_generator(size=16, seed=2)
    pkl = write_nvidia_pickle(tmp_path / "net.pkl", G)
    out = tmp_path / "net.safetensors"
    assert main(["weights", "convert", str(pkl), str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["resolution"] == 16 and info["n_latent"] == 6 and info["latent_avg"] == "from checkpoint"
    G2 = load_generator(out)
    w = G.map(torch.randn(2, G.style_dim, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        torch.testing.assert_close(G2.synthesize(w), G.synthesize(w), rtol=1e-5, atol=1e-5)


def test_convert_errors_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x03cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    assert main(["weights", "convert", str(bad), str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "bad.pkl" in err and "refused" in err and "Traceback" not in err
    assert not (tmp_path / "o.safetensors").exists()
    assert main(["weights", "convert", str(bad), str(tmp_path / "o.bin")]) == 2
    assert ".safetensors" in capsys.readouterr().err


def test_convert_into_a_folder_or_onto_a_full_disk_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    import errno

    from soundedit import fileio

    G = seeded_generator(size=16, seed=2)
    pkl = write_nvidia_pickle(tmp_path / "net.pkl", G)
    (tmp_path / "d.safetensors").mkdir()
    assert main(["weights", "convert", str(pkl), str(tmp_path / "d.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "OUT: expected a .safetensors file path, got the folder" in err and "Errno" not in err

    def full_disk(fd):  # the disk fills while the file is flushed
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full_disk)
    out = tmp_path / "net.safetensors"
    assert main(["weights", "convert", str(pkl), str(out)]) == 1
    err = capsys.readouterr().err
    assert f"No space left on device ({str(out)!r})" in err, err
    assert "internal error" not in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.safetensors", "net.pkl"]  # no temp file left
