"""The Gradio page of ``soundedit serve``: inputs, a queued edit with live progress, results and history.

Built on the public API only (:class:`soundedit.Editor`, :mod:`soundedit.weights`,
:mod:`soundedit.audio`, the presets); everything that is not page layout lives in
:mod:`soundedit.app.jobs`.  It imports Gradio: reach it through :func:`soundedit.app.serve` or
``soundedit.app.build_app``, which check for Gradio and set its environment first.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import queue as queue_mod
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from soundedit.app.jobs import (EditorCache, JobCancelled, JobQueue, QueueFull, Workspace, check_address, check_sound,
                                check_upload)
from soundedit.app.settings import AppSettings
from soundedit.audio.io import AUDIO_EXTENSIONS
from soundedit.errors import InputError, SoundeditError, WeightsMissingError, check_seed
from soundedit.inversion.image import to_uint8

logger = logging.getLogger("soundedit")

#: weights.lock layouts that are StyleGAN2 generators (offered in the generator menu)
GENERATOR_LAYOUTS = ("rosinality-stylegan2-pt", "nvidia-stylegan2-pkl")
#: seconds between progress updates sent to the page (previews are sent when they are made)
UPDATE_EVERY = 0.3
MAX_EXAMPLES = 16


@dataclass
class Component:
    """A model the page can use: what to load (name or path), whether it is here, and if not, why."""

    label: str
    value: str
    present: bool
    note: str = ""


def check_component(name_or_path: str) -> Component:
    """Whether a weights.lock name is in the cache (never downloads) or a path exists.

    Raises:
        InputError: neither a weights.lock name nor an existing file (``soundedit serve`` checks its
            options first, so its error names the option).
    """
    from soundedit.weights import check_name, locate

    found = check_name(name_or_path)
    if isinstance(found, Path):
        return Component(found.name, str(found), True)
    try:
        locate(name_or_path)
    except WeightsMissingError as exc:
        return Component(name_or_path, name_or_path, False, str(exc))
    return Component(name_or_path, name_or_path, True)


def generator_components(settings: AppSettings) -> list[Component]:
    """The generator menu: the given ones, or every StyleGAN2 entry of weights.lock."""
    from soundedit.weights import load_lock

    names = settings.generators or [e.name for e in load_lock() if e.layout in GENERATOR_LAYOUTS]
    return [check_component(n) for n in names]


def _default_steps(settings: AppSettings) -> int:
    if settings.steps is not None:
        return settings.steps
    from soundedit.config import auto_steps
    from soundedit.runtime import resolve_device

    return auto_steps(resolve_device(settings.device).type)


def _examples(settings: AppSettings, workspace: Workspace) -> list[str]:
    """Example sounds copied into the workspace (so the app serves its own files only)."""
    from soundedit.editing.examples import write_siren

    folder = workspace.root / "examples"
    folder.mkdir(exist_ok=True)
    paths = [write_siren(str(folder / "siren.wav"))]
    if settings.examples is not None:
        if not settings.examples.is_dir():
            raise InputError(f"--examples: expected a folder of sounds, got {str(settings.examples)!r}")
        max_bytes = int(settings.max_upload_mb * 1e6)
        found = sorted(f for f in settings.examples.iterdir()
                       if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS and f.stat().st_size <= max_bytes)
        for f in found[:MAX_EXAMPLES]:
            shutil.copyfile(f, folder / f.name)
            paths.append(str(folder / f.name))
    return paths


def _upload_path(payload: Any) -> str | None:
    """A photo upload's path, not decoded: Gradio's own decoding fails on a bad file with a bare "Error";
    :func:`_check_photo` decodes it and names the photo instead."""
    if payload is None:
        return None
    return str(payload.path) if payload.path else None


def _check_photo(path: Path) -> None:
    """Decode an uploaded photo now, so a bad one (not an image, too large, too small) is named up front."""
    from soundedit.inversion.api import check_photo
    from soundedit.inversion.image import load_image

    try:
        check_photo(load_image(path, what="photo"), what="photo")
    except InputError as exc:  # named by its own name, not by its place on the server
        raise type(exc)(str(exc).replace(str(path), path.name)) from None


def _check_wplus(path: Path, *, n_latent: int | None = None, style_dim: int | None = None) -> None:
    """An uploaded W+ file holding one code: the page edits and shows one image.

    Without a generator only the file itself is checked (readable, finite values, one code if it is
    ``(N, L, D)``); with ``n_latent``/``style_dim`` its shape is fitted to the generator too.
    """
    from soundedit.editing.sources import count_codes, read_latent

    try:
        w = read_latent(path, what="W+ file")
    except InputError as exc:  # named by its own name, not by its place on the server
        raise type(exc)(str(exc).replace(str(path), path.name)) from None
    n = count_codes(w, f"W+ file {path.name!r}", n_latent=n_latent, style_dim=style_dim)
    if n != 1:
        raise InputError(f"W+ file: {path.name!r} holds {n} codes (shape {tuple(w.shape)}); expected one code, as "
                         "this page edits one image (`soundedit edit --latent FILE` edits every code of a file)")


def _md_error(exc: BaseException | str) -> str:
    return f"<div class='se-error'><b>Error:</b> {html.escape(str(exc))}</div>"


def _md_status(text: str) -> str:
    return f"<div class='se-status'>{text}</div>"


def _layers(split: int, n_latent: int) -> str:
    """Style-mixing ranges: layers 1..k from the sound-guided code, the rest from the text-guided one."""
    k = max(1, min(int(split), n_latent - 1))
    return f"1-{k}:sound,{k + 1}-{n_latent}:text"


CSS = """
.se-error { color: #b00020; border: 1px solid #b00020; border-radius: 6px; padding: 8px 12px; }
.se-status { padding: 8px 12px; }
.se-missing { background: #fff4e5; border-radius: 6px; padding: 8px 12px; }
"""


def build_app(settings: AppSettings, *, workspace: Workspace | None = None) -> tuple[gr.Blocks, dict[str, Any]]:
    """Build the page.

    Args:
        settings: the server's settings.
        workspace: where uploads and outputs go (default: a fresh temp folder).

    Returns:
        ``(blocks, state)``; ``state`` holds the shared ``queue``, ``cache`` and ``workspace``.

    Raises:
        InputError: a component that is neither a weights.lock name nor an existing file.
    """
    from soundedit.editing.presets import PRESETS, default_preset

    workspace = workspace or Workspace()
    jobs = JobQueue(concurrency=settings.concurrency, max_queue=settings.max_queue)
    cache = EditorCache(device=settings.device, identity=settings.identity)
    generators = generator_components(settings)
    encoder, clip = check_component(settings.audio_encoder), check_component(settings.clip)
    identity = check_component(settings.identity) if settings.identity else None
    by_label = {g.label: g for g in generators}
    present = [g.label for g in generators if g.present]
    missing_notes = [g.note for g in generators if not g.present]
    shared_missing = [c.note for c in (encoder, clip) if not c.present]
    steps_default = min(_default_steps(settings), settings.max_steps)
    max_bytes = int(settings.max_upload_mb * 1e6)
    example_sounds = _examples(settings, workspace)

    def preset_values(preset: str, generator_label: str | None) -> tuple[float, float]:
        name = preset if preset in PRESETS else default_preset(by_label[generator_label].value
                                                               if generator_label in by_label else None)
        return float(PRESETS[name]["lambda_sim"]), float(PRESETS[name]["lambda_id"])

    with gr.Blocks(title="soundedit", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        gr.Markdown("# soundedit\nEdit images with sound: pick a source image, give a sound (and optionally a "
                    "text), and the generator's latent code is optimised until CLIP sees the image close to it.")
        if shared_missing or not present:
            lines = shared_missing + ([] if present else ["No generator is available yet."] + missing_notes)
            gr.HTML("<div class='se-missing' id='missing-weights'><b>Weights missing</b> — edits cannot run until "
                    "these files are in place:<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines)
                    + "</ul></div>")
        with gr.Row():
            with gr.Column(scale=1):
                generator = gr.Dropdown(choices=present, value=present[0] if present else None, label="Generator",
                                        elem_id="generator")
                if missing_notes and present:
                    with gr.Accordion("Generators not downloaded", open=False):
                        gr.Markdown("\n".join(f"- {n}" for n in missing_notes))
                source_kinds = ["Random seed", "W+ file", "Photo"]
                source_kind = gr.Radio(source_kinds, value="Random seed", label="Source", elem_id="source-kind")
                with gr.Row() as seed_row:
                    # no precision: Gradio would round 1.5 to 2 silently; _check_inputs refuses it instead
                    seed = gr.Number(value=0, label="Seed", elem_id="seed")
                    new_seed = gr.Button("New seed", elem_id="new-seed", size="sm")
                wplus = gr.File(label="W+ file (.pt / .pth / .npy)", file_types=[".pt", ".pth", ".npy"],
                                elem_id="wplus-upload", visible=False)
                photo = gr.Image(label="Photo (inverted into the generator's W+)", type="filepath",
                                 sources=["upload"], elem_id="photo-upload", visible=False)
                photo.preprocess = _upload_path  # decoded by _check_inputs, which names a bad photo
                sound = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Sound",
                                 elem_id="sound")
                gr.Examples(examples=[[p] for p in example_sounds], inputs=[sound], label="Example sounds")
                with gr.Accordion("Second sound (mix)", open=False):
                    sound2 = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Second sound",
                                      elem_id="sound2")
                    gain2 = gr.Slider(-30, 10, value=-6, step=1, label="Gain of the second sound (dB)")
                with gr.Accordion("Text (optional)", open=False):
                    text = gr.Textbox(label="Text prompt", placeholder="e.g. a blue sky", elem_id="text")
                    split = gr.Slider(1, 17, value=9, step=1, label="Layer split (sound + text): W+ layers 1..k "
                                      "from the sound, the rest from the text")
                with gr.Accordion("Settings", open=True):
                    preset = gr.Dropdown(["auto", *PRESETS], value="auto", label="Preset")
                    lam_sim0, lam_id0 = preset_values("auto", generator.value)
                    steps = gr.Slider(1, settings.max_steps, value=steps_default, step=1, label="Steps",
                                      elem_id="steps")
                    with gr.Row():
                        lambda_sim = gr.Number(value=lam_sim0, label="λ_sim", minimum=0, elem_id="lambda-sim")
                        lambda_id = gr.Number(value=lam_id0, label="λ_ID", minimum=0, elem_id="lambda-id")
                        lr = gr.Number(value=0.1, label="Learning rate", minimum=1e-5, elem_id="lr")
                with gr.Row():
                    run_btn = gr.Button("Run edit", variant="primary", elem_id="run")
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel")
            with gr.Column(scale=1):
                status = gr.HTML(_md_status("Ready."), elem_id="status")
                preview = gr.Image(label="Live preview", interactive=False, elem_id="preview", format="png",
                                   height=256)
                with gr.Row():
                    before = gr.Image(label="Before", interactive=False, elem_id="before", format="png",
                                      height=256)
                    after = gr.Image(label="After", interactive=False, elem_id="after", format="png",
                                     height=256)
                animation = gr.Image(label="Optimisation", interactive=False, elem_id="animation", format="gif",
                                     height=256)
                with gr.Row():
                    dl_png = gr.DownloadButton("Download PNG", visible=False, elem_id="download-png")
                    dl_wplus = gr.DownloadButton("Download W+", visible=False, elem_id="download-wplus")
                    dl_report = gr.DownloadButton("Download report", visible=False, elem_id="download-report")
                gallery = gr.Gallery(label="This session's edits", columns=6, height=240, object_fit="contain",
                                     elem_id="history")
        history = gr.State([])
        # this page's running or waiting edit (by Gradio session), so Cancel stops exactly that one;
        # the edit checks the flag between steps and reports "Cancelled." itself
        active: dict[str, threading.Event] = {}
        cancel_lock = threading.Lock()

        source_views = [seed_row, wplus, photo]
        source_kind.change(lambda kind: [gr.update(visible=kind == k) for k in source_kinds],
                           inputs=source_kind, outputs=source_views)
        new_seed.click(lambda: secrets.randbelow(2**31), outputs=seed)
        for trigger in (preset.change, generator.change):
            trigger(preset_values, inputs=[preset, generator], outputs=[lambda_sim, lambda_id])

        outputs = [status, preview, before, after, animation, dl_png, dl_wplus, dl_report, gallery, history]
        private = re.compile(re.escape(str(workspace.root)) + r"[^\s'\"]*/")

        def error(exc: BaseException | str) -> str:
            """An error for the page: a file is named by its own name, never by its place on the server."""
            return _md_error(private.sub("", str(exc)))


        def run(gen_label, kind, seed_value, wplus_file, photo_file, sound_file, sound2_file, gain2_db, prompt,
                split_k, preset_name, n_steps, lam_sim, lam_id, rate, past, request: gr.Request):
            """One edit, streamed: checks, a place in the queue, the models, progress, the results."""
            try:
                job = _check_inputs(gen_label, kind, seed_value, wplus_file, photo_file, sound_file, sound2_file,
                                    prompt, n_steps, lam_sim, lam_id, rate)
            except SoundeditError as exc:
                yield {status: error(exc)}
                return
            try:
                ticket = jobs.enter()
            except QueueFull as exc:
                yield {status: error(exc)}
                return
            cancel = threading.Event()
            session = getattr(request, "session_hash", None) or f"anonymous-{ticket.id}"
            with cancel_lock:
                active[session] = cancel
            worker: threading.Thread | None = None
            try:
                position = first_position = ticket.position
                while position > 0:
                    if cancel.is_set():
                        yield {status: _md_status("Cancelled.")}
                        return
                    running, _ = jobs.counts()
                    yield {status: _md_status(f"<b>Busy</b> — position {position} in the queue "
                                              f"({running} edit(s) running). Your edit starts by itself.")}
                    position = ticket.wait(1.0)
                yield {status: _md_status("Loading the models (first edit with this generator)…"
                                          if len(cache) == 0 else "Starting…"),
                       preview: None}
                editor = cache.get(job["generator"], encoder.value, clip.value)
                if kind == "W+ file":  # its shape needs the generator: fitted now, named by the page's field
                    _check_wplus(Path(job["source"]), n_latent=int(editor.generator.n_latent),
                                 style_dim=int(editor.generator.style_dim))
                events: queue_mod.Queue = queue_mod.Queue()
                settings_kw = {"steps": job["steps"], "lr": job["lr"], "lambda_sim": job["lambda_sim"],
                               "lambda_id": job["lambda_id"], "preset": None if preset_name == "auto" else preset_name,
                               "frame_every": max(1, job["steps"] // 25)}
                preview_every = max(1, job["steps"] // 20)

                def step_callback(step: int, losses: dict) -> None:
                    if cancel.is_set():
                        raise JobCancelled
                    image = None
                    if step % preview_every == 0 or step == job["steps"] - 1:
                        last = editor.clip_space.last()
                        image = None if last is None else to_uint8(last[0])
                    events.put(("step", step, float(losses["total"].mean()), float(losses["clip"].mean()), image))

                def work() -> None:
                    editor.clip_space.start()
                    try:
                        sounds = [s for s in (job["sound"], job["sound2"]) if s]
                        gains = [0.0, float(gain2_db)] if len(sounds) == 2 else None
                        audio = (sounds if len(sounds) > 1 else sounds[0]) if sounds else None
                        if audio is not None and job["text"]:
                            n_latent = int(editor.generator.n_latent)
                            out = editor.mix(audio, job["text"], job["source"], gains_db=gains,
                                             layers=_layers(split_k, n_latent), interpolate=12,
                                             callback=step_callback, **settings_kw)
                        else:
                            out = editor.edit(audio=audio, text=job["text"], source=job["source"], gains_db=gains,
                                              callback=step_callback, **settings_kw)
                        events.put(("done", out))
                    except JobCancelled:
                        events.put(("cancelled",))
                    except SoundeditError as exc:
                        events.put(("error", exc))
                    except Exception as exc:  # a bug: keep serving, log the traceback, say what happened
                        logger.exception("edit failed")
                        events.put(("error", f"internal error: {type(exc).__name__}: {exc}"))
                    finally:
                        editor.clip_space.stop()

                worker = threading.Thread(target=work, name="soundedit-edit", daemon=True)
                worker.start()
                last_sent = 0.0
                while True:
                    try:
                        event = events.get(timeout=1.0)
                    except queue_mod.Empty:
                        if worker.is_alive():
                            continue
                        event = ("error", "the edit stopped without a result (see the server log)")
                    if event[0] == "step":
                        _, step, total, clip_loss, image = event
                        now = time.monotonic()
                        if image is None and now - last_sent < UPDATE_EVERY and step < job["steps"] - 1:
                            continue
                        last_sent = now
                        update = {status: _md_status(f"Step {step + 1}/{job['steps']} · loss {total:.4f} "
                                                     f"· CLIP distance {clip_loss:.4f}")}
                        if image is not None:
                            update[preview] = image
                        yield update
                    elif event[0] == "cancelled":
                        yield {status: _md_status("Cancelled.")}
                        return
                    elif event[0] == "error":
                        yield {status: error(event[1])}
                        return
                    else:
                        result = event[1]
                        break
                folder = workspace.new_job()
                paths = result.save(folder)
                edited = paths.get("edited", paths.get("mixed"))
                anim = paths.get("progress", paths.get("interpolation"))
                report = result.report()
                cosine = report.get("metrics", report.get("mixed_metrics", {}))
                caption = job["caption"]
                past = list(past) + [(str(edited), caption)]
                done = f"Done: {job['steps']} steps"
                if first_position > 0:
                    done += f" (waited in the queue from position {first_position})"
                if "target_cosine" in cosine:
                    done += f" · target cosine {cosine['target_cosine']:.3f}"
                done += f" · edit {len(past)} of this session"
                yield {status: _md_status(done), before: str(paths["source"]), after: str(edited),
                       animation: str(anim) if anim else None,
                       dl_png: gr.DownloadButton(value=str(edited), visible=True),
                       dl_wplus: gr.DownloadButton(value=str(paths["w_plus"]), visible=True),
                       dl_report: gr.DownloadButton(value=str(paths["report"]), visible=True),
                       gallery: past, history: past}
            except SoundeditError as exc:
                yield {status: error(exc)}
            finally:  # also when the page goes away (Gradio closes the generator): stop the edit, free its slot
                cancel.set()
                if worker is not None:
                    worker.join()
                ticket.leave()
                with cancel_lock:
                    if active.get(session) is cancel:
                        del active[session]

        def cancel_job(request: gr.Request) -> None:
            """Stop this page's edit (running or waiting); the edit itself reports 'Cancelled.'."""
            with cancel_lock:
                event = active.get(getattr(request, "session_hash", None))
            if event is not None:
                event.set()

        def _check_inputs(gen_label, kind, seed_value, wplus_file, photo_file, sound_file, sound2_file, prompt,
                          n_steps, lam_sim, lam_id, rate) -> dict[str, Any]:
            """Every input checked before the job takes a place in the queue."""
            if not encoder.present or not clip.present:
                raise InputError(" ".join(c.note for c in (encoder, clip) if not c.present))
            if gen_label not in by_label:
                raise InputError(f"generator: expected one of {present or 'the generators above (none is present)'}, "
                                 f"got {gen_label!r}")
            gen = by_label[gen_label]
            if not gen.present:
                raise InputError(gen.note)
            prompt = (prompt or "").strip()
            if not sound_file and not prompt:
                raise InputError("nothing to edit towards: upload or record a sound (or pick an example), "
                                 "and/or write a text prompt")
            if sound2_file and not sound_file:
                raise InputError("second sound: give the first sound too (the second is mixed under it)")
            for what, f in (("sound", sound_file), ("second sound", sound2_file)):
                if f:
                    check_sound(f, what=what, max_bytes=max_bytes, max_duration=settings.max_duration)
            if kind == "Random seed":
                if seed_value is None:
                    raise InputError("seed: expected a whole number, got an empty field")
                if isinstance(seed_value, float) and seed_value.is_integer():
                    seed_value = int(seed_value)
                source: Any = check_seed(seed_value, "seed")
                caption = f"seed {source}"
            elif kind == "W+ file":
                if not wplus_file:
                    raise InputError("source: 'W+ file' is selected but no file was uploaded")
                path = check_upload(wplus_file, what="W+ file", max_bytes=max_bytes)
                _check_wplus(path)
                source = str(path)
                caption = Path(source).name
            elif kind == "Photo":
                if not photo_file:
                    raise InputError("source: 'Photo' is selected but no photo was uploaded")
                path = check_upload(photo_file, what="photo", max_bytes=max_bytes)
                _check_photo(path)
                source = str(path)
                caption = Path(source).name
            else:
                raise InputError(f"source: expected one of {source_kinds}, got {kind!r}")
            if n_steps is None or not 1 <= int(n_steps) <= settings.max_steps:
                raise InputError(f"Steps: expected 1..{settings.max_steps} (this server's --max-steps), got {n_steps!r}")
            for name, v in (("λ_sim", lam_sim), ("λ_ID", lam_id)):
                if v is None or v < 0:
                    raise InputError(f"{name}: expected a number >= 0, got {v!r}")
            if lam_id > 0 and (identity is None or not identity.present):
                raise InputError(f"λ_ID = {lam_id:g} needs the identity network: "
                                 + (identity.note if identity is not None else "none was configured")
                                 + "; or set λ_ID to 0")
            if rate is None or rate <= 0:
                raise InputError(f"learning rate: expected a number > 0, got {rate!r}")
            target = " + ".join(x for x in (Path(sound_file).name if sound_file else "",
                                            Path(sound2_file).name if sound2_file else "",
                                            f"“{prompt}”" if prompt else "") if x)
            return {"generator": gen.value, "source": source, "sound": sound_file, "sound2": sound2_file,
                    "text": prompt or None, "steps": int(n_steps), "lambda_sim": float(lam_sim),
                    "lambda_id": float(lam_id), "lr": float(rate), "caption": f"{caption} → {target}"}

        run_btn.click(
            run, inputs=[generator, source_kind, seed, wplus, photo, sound, sound2, gain2, text, split, preset, steps,
                         lambda_sim, lambda_id, lr, history],
            outputs=outputs, concurrency_limit=settings.concurrency + settings.max_queue,
            concurrency_id="edit", show_progress="minimal")
        cancel_btn.click(cancel_job, concurrency_limit=None)

    return demo, {"queue": jobs, "cache": cache, "workspace": workspace,
                  "settings": dataclasses.asdict(settings)}


def launch(settings: AppSettings, workspace: Workspace, *, host: str = "127.0.0.1", port: int = 7860,
           share: bool = False, ready: Any = None) -> None:
    """Build the page and serve it until interrupted (use :func:`soundedit.app.serve`, which owns the workspace).

    Args:
        settings: the server's settings.
        workspace: where uploads, Gradio's cache and outputs go.
        host, port: where to listen.
        share: open a public gradio.live tunnel (off unless asked for).
        ready: ``ready(url)`` once the server listens (the CLI prints the address).
    """
    demo, _ = build_app(settings, workspace=workspace)
    # edits are limited by our JobQueue (it shows positions); Gradio's own queue only holds the overflow
    demo.queue(max_size=max(1, settings.max_queue), default_concurrency_limit=None, api_open=False)
    try:
        demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=True, quiet=True,
                    show_error=False, max_file_size=int(settings.max_upload_mb * 1e6), ssr_mode=False,
                    run_history=False, footer_links=["settings"], css=CSS, allowed_paths=[],
                    inbrowser=False, mcp_server=False, pwa=False, enable_monitoring=False)
    except OSError:
        # Gradio's "Cannot find empty port": another server took the port after serve checked it
        # (the model page takes seconds to build); name the port as that check does
        check_address(host, port)
        raise
    if ready is not None:
        ready(demo.local_url)
    demo.block_thread()
    demo.close()
