"""Saved W/W+ codes (``--latent``): files that are not torch/NumPy tensors, non-real dtypes and absurd
values are refused with one line naming the flag, before any model loads."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch

from soundedit.cli.main import main
from soundedit.editing.sources import MAX_LATENT_ABS, fit_latent, load_latent, read_latent
from soundedit.errors import InputError

SIREN = "1-31482-A-42.flac"
EXPECTED = "--latent: expected a W/W+ code saved by soundedit (.pt/.pth via torch.save, or .npy via numpy.save)"


class _Opaque:
    """Stands for any object a pickle may ask to build (the loader must never build it)."""


def _plain_pickle(path):
    with open(path, "wb") as f:  # protocol 4: torch.load would warn "Detected pickle protocol 4"
        pickle.dump(OrderedDict(w_plus=[0.0] * 4), f, protocol=4)


def _refused(path, **kwargs) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InputError) as err:
            read_latent(path, **kwargs)
    assert not caught, [str(w.message) for w in caught]  # torch's/numpy's warnings never reach the user
    message = str(err.value)
    assert "\n" not in message and "weights_only" not in message, message
    return message


def test_a_plain_pickle_is_refused_without_being_unpickled(tmp_path):
    path = tmp_path / "evil.pt"
    _plain_pickle(path)
    assert _refused(path) == (f"{EXPECTED}, got {str(path)!r} (a plain pickle, not a torch.save file; soundedit "
                              "does not load pickles, which can run code)")


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_legacy_torch_file_loads_or_is_refused_saying_why(protocol, tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"w_plus": torch.zeros(1, 8, 32)}, path, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    if protocol == 2:
        assert read_latent(path).shape == (1, 8, 32)
        return
    assert _refused(path) == (f"{EXPECTED}, got {str(path)!r} (a legacy (pre-zip) torch.save file in pickle protocol "
                              "4, which torch's safe loader cannot read; save it again with a current torch "
                              "(torch.save writes zip files since 1.6))")


def test_a_torch_file_with_objects_is_refused_naming_the_object(tmp_path):
    path = tmp_path / "obj.pt"
    torch.save({"w_plus": torch.zeros(8, 32), "extra": _Opaque()}, path)
    message = _refused(path)
    assert message.startswith(f"{EXPECTED}, got {str(path)!r} (a torch file holding objects soundedit does not "
                              "load: UnpicklingError: "), message
    assert "_Opaque" in message


@pytest.mark.parametrize("content, why", [
    (b"hello world, these are notes\n", "not a torch file: text ('hello world, these are n'...)"),
    (b"", "not a torch file: an empty file"),
    (b"abc", "not a torch file: a file of only 3 bytes"),
])
def test_a_file_that_is_not_a_torch_file_says_so(content, why, tmp_path):
    path = tmp_path / "text.pt"
    path.write_bytes(content)
    assert _refused(path) == f"{EXPECTED}, got {str(path)!r} ({why})"


def test_a_truncated_torch_file_is_one_line(tmp_path):
    path = tmp_path / "cut.pt"
    torch.save(torch.zeros(8, 32), path)
    path.write_bytes(path.read_bytes()[:200])
    assert _refused(path).startswith(f"{EXPECTED}, got {str(path)!r} (truncated or corrupt torch file: ")


def test_npy_files_that_are_not_arrays_of_numbers(tmp_path):
    text = tmp_path / "text.npy"
    text.write_text("0.1 0.2 0.3\n")
    assert _refused(text) == f"{EXPECTED}, got {str(text)!r} (not a NumPy .npy file: text ('0.1 0.2 0.3'...))"
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert "Object arrays cannot be loaded" in _refused(objects)
    strings = tmp_path / "strings.npy"
    np.save(strings, np.array(["ab", "cd"]))
    assert _refused(strings) == ("--latent strings.npy: expected real numbers (a float array), got dtype <U2 "
                                 "in shape (2,)")


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_codes_are_refused_naming_the_dtype(dtype, tmp_path):
    path = tmp_path / "w.pt"
    torch.save(torch.zeros(8, 32, dtype=dtype), path)
    name = str(dtype).removeprefix("torch.")
    assert _refused(path) == (f"--latent w.pt: expected real numbers (a float tensor), got dtype {name} "
                              "(complex numbers) in shape (8, 32)")
    np.save(tmp_path / "w.npy", np.zeros((8, 32), dtype=np.complex64))
    assert _refused(tmp_path / "w.npy") == ("--latent w.npy: expected real numbers (a float array), got dtype "
                                            "complex64 in shape (8, 32)")
    with pytest.raises(InputError, match="expected real numbers"):  # in-memory codes too (resolve_source)
        fit_latent(torch.zeros(8, 32, dtype=dtype), 8, 32, "source")


def test_boolean_codes_are_refused(tmp_path):
    torch.save(torch.ones(8, 32, dtype=torch.bool), tmp_path / "w.pt")
    assert "got dtype bool (booleans)" in _refused(tmp_path / "w.pt")


@pytest.mark.parametrize("value", [1e30, -1e5, MAX_LATENT_ABS * 1.01])
def test_absurdly_large_codes_are_refused_naming_the_largest_magnitude(value, tmp_path):
    w = torch.zeros(8, 32)
    w[3, 5] = value
    torch.save(w, tmp_path / "w.pt")
    assert _refused(tmp_path / "w.pt") == (f"--latent w.pt: expected |value| <= 10000 for a W/W+ code (real codes "
                                           f"are of order 1-10), got a largest magnitude of {abs(value):.3g} in "
                                           "shape (8, 32)")
    with pytest.raises(InputError, match="largest magnitude"):
        fit_latent(w, 8, 32, "source")


def test_large_but_plausible_integer_and_half_codes_still_load(tmp_path):
    w = torch.randn(8, 32, generator=torch.Generator().manual_seed(0))
    w[0, 0] = MAX_LATENT_ABS  # the bound itself is allowed
    torch.save(w, tmp_path / "w.pt")
    torch.testing.assert_close(load_latent(tmp_path / "w.pt", n_latent=8, style_dim=32)[0], w)
    torch.save({"w_plus": torch.full((2, 8, 32), 7, dtype=torch.int64)}, tmp_path / "ints.pt")
    assert torch.equal(load_latent(tmp_path / "ints.pt", n_latent=8, style_dim=32), torch.full((2, 8, 32), 7.0))
    np.save(tmp_path / "half.npy", np.full((32,), -3.5, dtype=np.float16))
    assert torch.equal(load_latent(tmp_path / "half.npy", n_latent=8, style_dim=32), torch.full((1, 8, 32), -3.5))
    for dtype in (np.uint16, np.uint32, np.uint64):  # unsigned wider than a byte: numbers too
        np.save(tmp_path / "unsigned.npy", np.full((8, 32), 9, dtype=dtype))
        assert torch.equal(load_latent(tmp_path / "unsigned.npy", n_latent=8, style_dim=32), torch.full((1, 8, 32), 9.0))


def test_a_big_endian_npy_code_loads(tmp_path):
    """torch.from_numpy refuses non-native byte order (a ValueError: "internal error" in the CLI)."""
    w = np.random.default_rng(0).standard_normal((1, 4, 8)).astype(">f4")
    np.save(tmp_path / "be.npy", w)
    torch.testing.assert_close(read_latent(tmp_path / "be.npy"), torch.from_numpy(w.astype("<f4")), rtol=0, atol=0)


def test_non_finite_codes_are_still_refused(tmp_path):
    w = torch.zeros(8, 32)
    w[0, 0] = float("inf")
    torch.save(w, tmp_path / "w.pt")
    assert _refused(tmp_path / "w.pt") == ("--latent w.pt: expected finite numbers, got 1 NaN/inf value(s) in "
                                           "shape (8, 32)")


# --- through the CLI: one line, exit 2, before the models load --------------------------------------------------


def _write(kind: str, path):
    if kind == "pickle":
        _plain_pickle(path)
    elif kind == "complex":
        torch.save(torch.zeros(8, 32, dtype=torch.complex64), path)
    elif kind == "huge":
        torch.save(torch.full((8, 32), 1e30), path)
    else:
        path.write_text("not a tensor\n")


@pytest.mark.parametrize("kind, message", [
    ("pickle", "(a plain pickle, not a torch.save file; soundedit does not load pickles, which can run code)"),
    ("complex", "error: --latent w.pt: expected real numbers (a float tensor), got dtype complex64"),
    ("huge", "error: --latent w.pt: expected |value| <= 10000 for a W/W+ code (real codes are of order 1-10), got a "
             "largest magnitude of 1e+30"),
    ("text", "(not a torch file: text ('not a tensor'...))"),
])
def test_edit_refuses_bad_latent_files_in_one_line(kind, message, esc50_root, soundedit_home, tmp_path, capfd):
    path = tmp_path / "w.pt"
    _write(kind, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["edit", "--latent", str(path), "--sound", str(esc50_root / "audio" / SIREN), "--device", "cpu",
                     "--out", str(tmp_path / "out")])
    err = capfd.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert err.startswith("error: --latent"), err
    assert not caught, [str(w.message) for w in caught]
    assert not (tmp_path / "out").exists()


def test_edit_with_a_plain_pickle_prints_exactly_one_line(esc50_root, soundedit_home, tmp_path):
    """As a user sees it: a fresh process, where torch's warnings would go straight to stderr."""
    path = tmp_path / "evil.pt"
    _plain_pickle(path)
    env = {**os.environ, "SOUNDEDIT_HOME": str(soundedit_home), "SOUNDEDIT_PROGRESS": "0"}
    done = subprocess.run([sys.executable, "-m", "soundedit", "edit", "--latent", str(path), "--sound",
                           str(esc50_root / "audio" / SIREN), "--device", "cpu", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"error: {EXPECTED}, got {str(path)!r} (a plain pickle, not a "
                                                "torch.save file; soundedit does not load pickles, which can run code)"]
