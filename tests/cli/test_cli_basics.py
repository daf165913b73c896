"""The installed command in a subprocess: help, env, weights list/path/import; exit codes and stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _command() -> list[str]:
    script = Path(sys.executable).with_name("soundedit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "soundedit"]


@pytest.fixture
def run(tmp_path):
    base = {**os.environ, "SOUNDEDIT_HOME": str(tmp_path / "home"), "SOUNDEDIT_OFFLINE": "1", "COLUMNS": "200"}
    base.pop("SOUNDEDIT_WEIGHTS_LOCK", None)

    def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(_command() + list(args), capture_output=True, text=True, env={**base, **(env or {})},
                              timeout=120)

    return run


def test_help_lists_the_subcommands(run):
    res = run("--help")
    assert res.returncode == 0, res.stderr
    for name in ("train", "embed", "edit", "mix", "classify", "weights", "invert", "eval", "serve", "env"):
        assert name in res.stdout


def test_env_json(run, tmp_path):
    res = run("env", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["versions"]["torch"] and data["versions"]["python"]
    assert data["devices"]["default_device"] in ("cpu", "cuda", "mps")
    assert data["weights"]["cache"] == str(tmp_path / "home" / "weights")
    assert data["weights"]["offline"] is True
    assert "clip-vit-b-32" in data["weights"]["absent"] and data["weights"]["present"] == []
    assert "stylegan2_ops" in data
    import torch

    steps = data["optimiser_steps"]
    assert steps["mode"] == "auto" and steps["path"] == ("cuda graph" if torch.cuda.is_available() else "eager")


def test_weights_list_json(run):
    res = run("weights", "list", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    names = {e["name"] for e in data["entries"]}
    assert {"landscape-256", "authors-resnet18", "clip-vit-b-32", "ffhq-1024", "church-256", "ir-se50"} <= names
    assert all(e["cached"] is False and e["licence"] for e in data["entries"])


def test_bad_name_exits_2_with_one_line(run):
    res = run("weights", "path", "landscape256")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "landscape256" in lines[0] and "landscape-256" in lines[0]
    assert res.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["edit", "--seed", "abc"], "error: Invalid value for '--seed': "),
    (["invert", "--bogus"], "error: No such option: --bogus"),
    (["weights", "convert"], "error: Missing argument 'IN'. (see 'soundedit weights convert --help')"),
    (["eval", "edits", "--batch-size", "0"], "error: Invalid value for '--batch-size': "),
    (["nosuchcommand"], "error: No such command 'nosuchcommand'. (see 'soundedit --help')"),
    # click raises an option's missing value without its context: the hint comes from the arguments
    (["edit", "--steps"], "error: Option '--steps' requires an argument. (see 'soundedit edit --help')"),
    (["-v", "weights", "fetch", "--bogus"], "error: No such option: --bogus (see 'soundedit weights fetch --help')"),
    (["train", "prepare", "esc50", "--out"],
     "error: Option '--out' requires an argument. (see 'soundedit train prepare esc50 --help')"),
    # a group option's value that is a subcommand's name is a value ('prepare' is the run folder here)
    (["train", "--out", "prepare", "--manifest"],
     "error: Option '--manifest' requires an argument. (see 'soundedit train --help')"),
])
def test_usage_errors_are_one_line_like_every_bad_input(run, args, message):
    """click's own form was a usage line, a hint and a five-line box."""
    res = run(*args)
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), res.stderr


@pytest.mark.parametrize("rich", ["1", "0"])
def test_help_and_no_command_show_the_help_once_with_0(run, rich):
    """A bare `soundedit` (or a group alone) asks what there is, as --help does: exit 0, not the
    usage error's 2 it was, and the help once (Typer's rich help printed itself, then main printed it again)."""
    res = run("edit", "--help", env={"TYPER_USE_RICH": rich})
    assert res.returncode == 0 and "--sound" in res.stdout and res.stderr == ""
    for args, usage in (((), "Usage: soundedit [OPTIONS] COMMAND"), (("weights",), "Usage: soundedit weights [OPTIONS]"),
                        (("train", "prepare"), "Usage: soundedit train prepare [OPTIONS]")):
        res = run(*args, env={"TYPER_USE_RICH": rich})
        assert res.returncode == 0 and res.stderr == "", res.stderr
        assert res.stdout.count("Usage:") == 1 and usage in res.stdout, res.stdout
    assert "edit" in run(env={"TYPER_USE_RICH": rich}).stdout


def test_missing_weights_offline_exit_1_with_instructions(run, tmp_path):
    res = run("weights", "fetch", "landscape-256")
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "https://kr.object.ncloudstorage.com/cvpr2022/landscape.pt" in lines[0]
    assert str(tmp_path / "home" / "weights" / "incoming" / "landscape.pt") in lines[0]
    assert "Traceback" not in res.stderr


def test_soundedit_home_that_is_a_file(run, tmp_path):
    home = tmp_path / "afile"
    home.write_text("")
    env = {**os.environ, "SOUNDEDIT_HOME": str(home), "SOUNDEDIT_OFFLINE": "1", "COLUMNS": "200"}
    env.pop("SOUNDEDIT_WEIGHTS_LOCK", None)

    def run_home(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(_command() + list(args), capture_output=True, text=True, env=env, timeout=120)

    # env is the bug-report command: it reports the bad setting instead of failing
    res = run_home("env", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)["weights"]
    assert data["home_error"] == f"SOUNDEDIT_HOME: expected a folder, got {str(home)!r} (a file)"
    assert "landscape-256" in data["absent"]
    res = run_home("env")
    assert res.returncode == 0 and "SOUNDEDIT_HOME: expected a folder" in res.stdout, res.stderr
    for args in (("weights", "fetch", "landscape-256"), ("weights", "path", "landscape-256")):
        res = run_home(*args)
        assert res.returncode == 2, res.stderr
        assert res.stderr.strip() == f"error: SOUNDEDIT_HOME: expected a folder, got {str(home)!r} (a file)"


def test_os_errors_on_the_users_folders_are_input_errors(run, tmp_path):
    # a file where the cache's weights/ folder should be: NotADirectoryError is reported, not a bug
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "weights").write_text("")
    res = run("weights", "path", "landscape-256")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error" not in lines[0] and "Not a directory" in lines[0]
    assert "but it or a folder above it is a file" in lines[0] and str(tmp_path / "home" / "weights") in lines[0]


def test_embed_cache_dir_that_is_a_file(run, tmp_path):
    sound, cache = tmp_path / "a.wav", tmp_path / "cachefile"
    sound.write_bytes(b"RIFF")
    cache.write_text("")
    res = run("embed", str(sound), "--json", "--cache-dir", str(cache / "sub"))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == (f"error: --cache-dir: expected a folder, got {str(cache / 'sub')!r} "
                                  f"({str(cache)!r} is a file)")


def test_env_reports_a_bad_offline_setting(tmp_path):
    env = {**os.environ, "SOUNDEDIT_HOME": str(tmp_path / "home"), "SOUNDEDIT_OFFLINE": "maybe"}
    res = subprocess.run(_command() + ["env", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)["weights"]
    assert data["offline"] is None and "SOUNDEDIT_OFFLINE: expected one of" in data["offline_error"]
    res = subprocess.run(_command() + ["weights", "fetch", "landscape-256"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 2 and res.stderr.strip().endswith("got 'maybe'"), res.stderr
