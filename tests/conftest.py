"""Shared test fixtures.

Real audio and parity fixtures live in ``../shared`` beside the checkout (override
with ``SOUNDEDIT_SHARED``); tests that need them skip with a clear reason when it
is missing, so the package's own tests still run elsewhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SOUNDEDIT_SHARED", REPO.parent / "shared"))
GOLDEN = SHARED / "golden"
AUDIO = SHARED / "audio"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not present (set SOUNDEDIT_SHARED to the shared/ folder)")
    return path


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return _need(GOLDEN)


@pytest.fixture(scope="session")
def audio_dir() -> Path:
    return _need(AUDIO)


@pytest.fixture(scope="session")
def esc50_root() -> Path:
    return _need(AUDIO / "esc50_fold1")


@pytest.fixture(scope="session")
def formats_dir() -> Path:
    return _need(AUDIO / "formats")


@pytest.fixture(scope="session")
def seeded_checkpoint(golden_dir):
    """``write(name, out_path) -> (path, expected_dict)``: a golden checkpoint in its real layout."""
    import torch

    spec = importlib.util.spec_from_file_location("seeded_checkpoint", golden_dir / "seeded_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def write(name: str, out: Path):
        spec_json = json.loads((golden_dir / f"{name}.spec.json").read_text())
        module.write_checkpoint(spec_json, str(out))
        expected = torch.load(golden_dir / f"{name}.expected.pt", weights_only=True)
        return out, expected

    return write


@pytest.fixture
def soundedit_home(tmp_path, monkeypatch) -> Path:
    """An empty, private weights cache for the test (``SOUNDEDIT_HOME``)."""
    home = tmp_path / "soundedit-home"
    home.mkdir()
    monkeypatch.setenv("SOUNDEDIT_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def no_tf32():
    """cuDNN convolutions and matmuls in full float32 for the module's tests (GPU parity tests).

    Saved and restored by hand: ``torch.backends.cuda.matmul.allow_tf32`` is a property that
    pytest's monkeypatch takes for a missing attribute and then fails to restore.
    """
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
