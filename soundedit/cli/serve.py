"""``soundedit serve``: the web app (Gradio) on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from soundedit.cli._common import DeviceOpt, check_weights, stderr
from soundedit.cli.main import app
from soundedit.errors import InputError, check_number


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0 opens it to the network).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 7860,
    device: DeviceOpt = "auto",
    max_queue: Annotated[int, typer.Option("--max-queue", help="Edits that may wait for a free slot; "
                                                               "more are refused with a 'busy' message.")] = 8,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Edits that run at the same time "
                                                                   "(1 on a GPU: an edit uses all of it).")] = 1,
    share: Annotated[bool, typer.Option("--share", help="Also open a public gradio.live link (off by default).")]
    = False,
    generator: Annotated[Optional[list[str]], typer.Option(
        "--generator", "-g", help="Generator weights.lock name or file offered in the menu; repeat for several "
                                  "(default: every StyleGAN2 entry of weights.lock).")] = None,
    audio_encoder: Annotated[str, typer.Option("--audio-encoder", help="Audio encoder name or file.")]
    = "authors-resnet18",
    clip: Annotated[str, typer.Option("--clip", help="CLIP name or file (OpenAI layout).")] = "clip-vit-b-32",
    identity: Annotated[str, typer.Option("--identity", help="IR-SE50 name or file; loaded only for edits "
                                                             "with λ_ID > 0.")] = "ir-se50",
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest upload (MB).")] = 50.0,
    max_duration: Annotated[float, typer.Option("--max-duration", help="Longest sound (seconds).")] = 30.0,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Start value of the steps slider "
                                                                 "(default 300 on a GPU, 60 on a CPU).")] = None,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Largest number of steps a user may ask for.")]
    = 1000,
    examples: Annotated[Optional[Path], typer.Option("--examples", help="Folder of example sounds to offer "
                                                                        "(up to 16, beside a synthetic siren).")]
    = None,
) -> None:
    """Serve the web app (Gradio) until Ctrl+C.

    Models are loaded once, on the first edit that needs them, and shared by
    every user; edits wait in a queue (position shown on the page).  Missing
    weights are named on the page with how to get them.  Nothing is sent
    outside this machine unless --share is given.

    Example: soundedit serve --port 7860 --generator landscape-256
    """
    if not 1 <= port <= 65535:
        raise InputError(f"--port: expected 1..65535, got {port}")
    for name, value in (("--max-upload-mb", max_upload_mb), ("--max-duration", max_duration)):
        check_number(value, name, low=0, low_open=True)  # inf too: no limit is not a limit
    if max_steps < 1:
        raise InputError(f"--max-steps: expected an integer >= 1, got {max_steps}")
    if steps is not None and not 1 <= steps <= max_steps:
        raise InputError(f"--steps: expected 1 to --max-steps ({max_steps}), got {steps}")
    if max_queue > 64 or concurrency > 8:
        raise InputError(f"--max-queue/--concurrency: expected at most 64/8, got {max_queue}/{concurrency}")
    check_weights(*(("--generator", g) for g in generator or []), ("--audio-encoder", audio_encoder), ("--clip", clip),
                  ("--identity", identity or None))  # '': no identity net (AppSettings)
    from soundedit.app import serve as serve_app
    from soundedit.app.settings import AppSettings

    settings = AppSettings(generators=list(generator or []), audio_encoder=audio_encoder, clip=clip,
                           identity=identity, device=device, max_queue=max_queue, concurrency=concurrency,
                           max_upload_mb=max_upload_mb, max_duration=max_duration, max_steps=max_steps, steps=steps,
                           examples=examples)
    serve_app(settings, host=host, port=port, share=share,
           ready=lambda url: stderr.print(f"soundedit serve: listening on {url} (Ctrl+C to stop)", highlight=False))
