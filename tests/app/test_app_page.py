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
