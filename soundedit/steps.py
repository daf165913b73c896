"""Running optimisation loops fast: CUDA-graph replay of a step, capturable Adam, device-side history.

The latent optimisers (sound-guided editing, projection) repeat one step hundreds of times with
the same shapes: render ``G(w)``, score it, back-propagate, update ``w``. At batch 1 on a GPU that
step is bound by the host, not the GPU: a 1024-px generator step issues hundreds of small
operations (740 on the PyTorch path, 284 with the CUDA ops): on an H100 a 1024-px generator
forward + backward takes 22.8 ms with the CUDA ops for about 10 ms of GPU work. A CUDA graph
records the step's kernels once and replays them with one call, so each later step costs the GPU
time only: 10.3 ms (38.8 ms eager PyTorch, 14.7 ms the PyTorch path graphed; fp32, batch 1).

:class:`StepGraph` wraps a zero-argument ``step()`` closure: its first ``warmup`` calls run
eagerly (on a side stream, as CUDA graph capture requires: lazy initialisation such as cuDNN
algorithm choice and the optimiser's state must happen before capture), the next call captures
it and every call from then on replays the graph and returns the *same* output tensors, refilled.
What the closure reads must therefore live in tensors that keep their storage (the code ``w``,
the optimiser state, static input buffers refilled in place before a call); a Python number read
inside ``step()`` is frozen at capture. Learning rates are such numbers: :func:`make_adam` gives
capturable Adam a tensor learning rate that :func:`set_lr` refills.

``SOUNDEDIT_CUDA_GRAPH`` (or the ``mode`` argument) chooses: ``auto`` (default: graphs on CUDA; if
a step cannot be captured, e.g. it reads a value back to the host, one warning is logged and
the loop goes on eagerly), ``on`` (graphs or an error) and ``off`` (always eager). CPU and MPS
steps always run eagerly. Results equal the eager loop's: replay runs the very kernels the eager
step runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

import torch

from soundedit.errors import InputError, SoundeditError
from soundedit.runtime import switch_setting

__all__ = ["StepGraph", "StepHistory", "CudaGraphError", "graph_mode", "check_graph_mode", "graph_status",
           "make_adam", "set_lr", "refill", "ENV_VAR"]

logger = logging.getLogger("soundedit")

ENV_VAR = "SOUNDEDIT_CUDA_GRAPH"
#: eager calls before capture (the pattern of PyTorch's whole-network capture example).
DEFAULT_WARMUP = 3

T = TypeVar("T")


class CudaGraphError(SoundeditError):
    """``SOUNDEDIT_CUDA_GRAPH=on`` (or ``mode="on"``) but the step cannot run as a CUDA graph."""

    exit_code = 1


def graph_mode(mode: str | None = None) -> str:
    """The CUDA-graph setting: ``mode`` if given, else ``SOUNDEDIT_CUDA_GRAPH``, else ``"auto"``.

    Raises:
        InputError: a value other than ``auto``, ``on`` or ``off``.
    """
    return switch_setting(ENV_VAR, mode, label="cuda_graph")


def check_graph_mode(mode: str | None, device: torch.device | str) -> str:
    """:func:`graph_mode`, also checked against the device the step will run on.

    Raises:
        InputError: a bad value.
        CudaGraphError: ``on`` for a device other than CUDA.
    """
    value = graph_mode(mode)
    device = torch.device(device)
    if value == "on" and device.type != "cuda":
        raise CudaGraphError(f"{ENV_VAR}=on but the step runs on {device}: CUDA graphs need a CUDA device "
                             f"(use {ENV_VAR}=auto)")
    return value


def graph_status() -> dict[str, str | None]:
    """``{"mode", "path", "why"}``: how optimisation steps on the default CUDA device run here."""
    try:
        mode = graph_mode()
    except InputError as exc:
        return {"mode": None, "path": "error", "why": str(exc)}
    if mode == "off":
        return {"mode": mode, "path": "eager", "why": f"{ENV_VAR}=off"}
    if not torch.cuda.is_available():
        return {"mode": mode, "path": "eager", "why": "no CUDA GPU visible (CUDA graphs need one)"}
    return {"mode": mode, "path": "cuda graph",
            "why": f"steps after the first {DEFAULT_WARMUP} replay a captured graph"
                   + (" (eager if the capture fails)" if mode == "auto" else "")}


class StepGraph(Generic[T]):
    """Call ``step()`` eagerly ``warmup`` times, then capture it once and replay the CUDA graph.

    Args:
        step: the optimisation step; returns a tensor or a (nested) tuple/list/dict of tensors.
            After capture every call returns the captured output tensors, overwritten by the
            replay: copy what must outlive the next call.
        device: the device the step runs on; only CUDA steps are captured.
        mode: ``"auto"``, ``"on"``, ``"off"`` or ``None`` (read ``SOUNDEDIT_CUDA_GRAPH``).
        warmup: eager calls before the capture (>= 1).

    Attributes:
        may_capture: whether this step will be captured (a CUDA device and mode not ``off``);
            build the optimiser with ``capturable=may_capture`` (:func:`make_adam`).
        state: ``"eager"`` (never captured), ``"warmup"``, ``"graph"`` (replaying) or
            ``"fallback"`` (the capture failed in ``auto`` mode; ``reason`` says why).

    Raises:
        InputError: a bad ``mode`` or ``warmup``.
        CudaGraphError: ``mode="on"`` with a non-CUDA device, or (at the capturing call) a step
            that cannot be captured.
    """

    def __init__(self, step: Callable[[], T], *, device: torch.device | str, mode: str | None = None,
                 warmup: int = DEFAULT_WARMUP) -> None:
        self.mode = check_graph_mode(mode, device)
        if warmup < 1:
            raise InputError(f"warmup: expected >= 1 eager calls before capture, got {warmup}")
        device = torch.device(device)
        self._device = device
        self._step = step
        self.warmup = warmup
        self.may_capture = device.type == "cuda" and self.mode != "off"
        self.state = "warmup" if self.may_capture else "eager"
        self.reason = "" if self.may_capture else (f"{ENV_VAR}=off" if self.mode == "off" else f"device {device}")
        self._calls = 0
        self._side: torch.cuda.Stream | None = None
        self._graph: torch.cuda.CUDAGraph | None = None
        self._outputs: T | None = None

    @property
    def ran_as(self) -> str:
        """How the calls so far ran, for reports: ``"graph"`` (replays), ``"fallback"`` (the capture
        failed) or ``"eager"`` (never captured: not CUDA, ``off``, or no more calls than the warm-up)."""
        return self.state if self.state in ("graph", "fallback") else "eager"

    def __call__(self) -> T:
        if self.state == "graph":
            self._graph.replay()  # replays on the graph's device
            return self._outputs
        if self.state != "warmup":
            return self._step()
        # Streams, synchronisation and capture all refer to the current device: make it the step's
        # (a model on cuda:1 while the thread's current device is cuda:0).
        with torch.cuda.device(self._device):
            return self._warm_up_or_capture()

    def _warm_up_or_capture(self) -> T:
        if self._calls < self.warmup:
            self._calls += 1
            if self._side is None:
                self._side = torch.cuda.Stream(self._device)  # one for all warm-up calls and the capture
            return _on_side_stream(self._step, self._side)
        try:
            self._graph, self._outputs = self._capture()
        except Exception as exc:  # noqa: BLE001 - any capture failure: fall back (auto) or report (on)
            self._graph = self._outputs = None
            summary = _first_error(exc)
            if self.mode == "on":
                raise CudaGraphError(f"{ENV_VAR}=on but the optimisation step cannot be captured as a CUDA graph "
                                     f"({summary})") from exc
            logger.warning("optimisation step not captured as a CUDA graph (%s); running it eagerly "
                           "(set %s=off to skip the attempt)", summary, ENV_VAR)
            self.state, self.reason = "fallback", summary
            torch.cuda.synchronize(self._device)
            return self._step()
        self.state = "graph"
        self._graph.replay()  # capturing records the kernels without running them: this is the call's step
        return self._outputs

    def _capture(self) -> tuple[torch.cuda.CUDAGraph, T]:
        """Record one step into a new CUDA graph; returns the graph and the step's output tensors."""
        graph = torch.cuda.CUDAGraph()  # entering torch.cuda.graph synchronises and empties the cache first
        # This step's own stream (torch.cuda.graph's default is one stream shared by all captures)
        # and thread_local errors: other threads (the web app's other requests) may keep using the
        # GPU, and capturing, meanwhile.
        before = torch.cuda.current_stream()
        try:
            with torch.cuda.graph(graph, stream=self._side, capture_error_mode="thread_local"):
                outputs = self._step()
        except BaseException:
            # when capture_end raises, torch.cuda.graph's exit never switches back from its stream
            torch.cuda.set_stream(before)
            raise
        return graph, outputs


def _first_error(exc: BaseException) -> str:
    """One line naming the error that started it: a failed capture raises again when the capture
    ends, and that second error (``capture_end``) hides the informative first one in ``__context__``."""
    while exc.__context__ is not None:
        exc = exc.__context__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _on_side_stream(fn: Callable[[], T], side: torch.cuda.Stream) -> T:
    """Run ``fn`` on the ``side`` stream, ordered after the current stream's work and before its next.

    Waiting for the current stream first also makes it safe for the side stream to reuse memory
    the current stream may still read (the previous step's outputs, copied into the history).
    """
    current = torch.cuda.current_stream()
    side.wait_stream(current)
    with torch.cuda.stream(side):
        out = fn()
    current.wait_stream(side)
    return out


def make_adam(params: Iterable[torch.Tensor], lr: float, *, capturable: bool, device: torch.device | str,
              **kwargs) -> torch.optim.Adam:
    """Adam whose learning rate :func:`set_lr` can change under CUDA-graph replay.

    With ``capturable`` the learning rate is a one-element tensor on ``device`` (a Python float
    would be frozen into the captured graph), the step counter lives on the device, and the
    multi-tensor (``foreach``) implementation is used: the single-tensor one divides by the
    learning rate, so the schedules' first step (learning rate 0) turns every parameter whose
    gradient is exactly 0 into NaN.
    """
    if not capturable:
        return torch.optim.Adam(params, lr=lr, **kwargs)
    kwargs.setdefault("foreach", True)
    optimizer = torch.optim.Adam(params, lr=torch.tensor(float(lr), device=device), capturable=True, **kwargs)
    # The warm-up steps run it outside a capture by design; PyTorch would warn about that once.
    optimizer._warned_capturable_if_run_uncaptured = True
    return optimizer


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate: in place for tensor rates (CUDA-graph safe), else assigned."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def refill(static: torch.Tensor, values: torch.Tensor) -> None:
    """Copy host ``values`` into ``static`` (an input buffer a captured step reads) without waiting for the GPU.

    A host-to-device copy from ordinary (pageable) memory may first wait for the stream's earlier
    work (CUDA stages it through pinned memory after a stream sync), which would stall the loop
    once per buffer and step; from pinned memory it is queued like a kernel. PyTorch's pinned-memory
    cache keeps the pinned block until the copy has run, so ``values`` may be dropped at once.
    """
    if static.is_cuda:
        values = values.pin_memory()
    static.copy_(values, non_blocking=True)


class StepHistory:
    """Per-step, per-item losses kept on the device, read back once at the end.

    Reading each step's losses to the CPU would wait for the GPU after every step, so the host
    could never run ahead (and a replayed graph's outputs are overwritten by the next step).

    Args:
        keys: loss names.
        steps: number of steps to record.
        n: batch size (items per loss).
        device: where the losses are computed.
    """

    def __init__(self, keys: Sequence[str], steps: int, n: int, device: torch.device | str) -> None:
        self._rows = {k: torch.zeros(steps, n, device=device) for k in keys}

    def record(self, step: int, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Copy this step's ``(N,)`` losses in; returns them as views that later steps leave alone."""
        for k, rows in self._rows.items():
            rows[step].copy_(losses[k].detach())
        return {k: rows[step] for k, rows in self._rows.items()}

    def to_cpu(self) -> dict[str, torch.Tensor]:
        """``{key: (steps, N)}`` CPU tensors."""
        return {k: rows.cpu() for k, rows in self._rows.items()}
