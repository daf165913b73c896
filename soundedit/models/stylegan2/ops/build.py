"""Build and load the CUDA extension of the StyleGAN2 ops (``csrc/``) with ninja, on first use.

Where it goes: ``$TORCH_EXTENSIONS_DIR`` if set, else ``$SOUNDEDIT_HOME/torch_extensions``, else
``~/.cache/soundedit/torch_extensions`` (``$XDG_CACHE_HOME`` respected); inside, one folder per
``torch<version>-cu<torch CUDA>-nvcc<nvcc release>-<hash>`` where the hash covers the sources, the
compiler flags and the target architectures. An upgrade of torch, of the toolkit or of the sources
therefore builds afresh, and nothing rebuilds otherwise.

Toolkit: ``$CUDA_HOME``/``$CUDA_PATH``, else the toolkit of the ``nvcc`` on ``PATH``, else
``/usr/local/cuda``. ``nvcc`` on ``PATH`` may be a wrapper script (``/usr/local/bin/nvcc`` here),
so the toolkit root is the first candidate holding both ``bin/nvcc`` and ``include/cuda_runtime.h``;
torch's own guess (the parent of the ``nvcc`` found on ``PATH``) can point at ``/usr/local``, which
has neither the headers nor ``lib64/libcudart``.

Versions: the toolkit's major version must equal the one torch was built with (``torch.version.cuda``;
13.0 for torch 2.11+cu130, matching nvcc 13.0 here); a minor difference only logs a warning, as
``torch.utils.cpp_extension`` does for setup.py builds (its JIT ``load`` does not check at all).

Architectures: ``$TORCH_CUDA_ARCH_LIST`` (numbers such as ``"8.0;9.0+PTX"``) if set, else those of the
visible GPUs, else ``8.0;9.0`` (A100, H100) so that the build works, and is tested, on machines
without a GPU. The highest architecture also gets PTX so that newer GPUs can JIT-compile it.

Cost: the first build compiles ``ops.cpp`` (torch's extension headers) and ``ops.cu`` (two
architectures) in parallel: about 25 s of wall time on an idle 2-core machine (about 70 s of CPU),
several minutes when the cores are shared; 34-47 s on the lent H100 machine (one architecture,
sm_90a, but the two files compile in parallel whatever the core count). Later processes load the cached library in well under
a second. ``import torch.utils.cpp_extension`` (done here only when building) logs torch's own
"No CUDA runtime is found, using CUDA_HOME=..." on machines without a GPU; the CUDA_HOME it
names is not the one used (see above).

Concurrency: an ``flock`` on ``BUILD_LOCK`` in the build folder makes a second process wait for
the first one's build and then load the result. Torch's own lock file (``<build dir>/lock``, which a killed build
leaves behind, making every later build wait forever) is removed while our lock is held.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from types import ModuleType

import torch

from soundedit.errors import SoundeditError
from soundedit.fileio import exclusive_lock

logger = logging.getLogger("soundedit")

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = ("ops.cpp", "ops.cu")
HEADERS = ("ops.h",)
DEFAULT_ARCHS = ("8.0", "9.0")
EXTENSION_PREFIX = "soundedit_sg2ops"
BUILD_LOCK = ".soundedit-build.lock"  # in the build folder: one builder at a time
_CXX_FLAGS = ("-O3", "-std=c++17")
_NVCC_FLAGS = ("-O3", "-std=c++17")
_MIN_SUPPORTED_ARCH = (7, 5)  # CUDA 13 dropped Maxwell, Pascal and Volta


class CudaOpsBuildError(SoundeditError):
    """The CUDA extension of the StyleGAN2 ops cannot be built or loaded here."""

    exit_code = 1

    def __init__(self, summary: str, *, log: Path | None = None) -> None:
        self.summary = summary
        self.log = log
        super().__init__(summary + (f" (full log: {log})" if log else ""))


@dataclasses.dataclass(frozen=True)
class Toolkit:
    """A CUDA toolkit: its root, its nvcc and nvcc's release (``"13.0"``)."""

    home: Path
    nvcc: Path
    version: str


def extensions_root() -> Path:
    """The folder holding all builds (see the module docstring for the order of precedence)."""
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return Path(os.environ["TORCH_EXTENSIONS_DIR"]).expanduser()
    if os.environ.get("SOUNDEDIT_HOME"):
        return Path(os.environ["SOUNDEDIT_HOME"]).expanduser() / "torch_extensions"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return cache / "soundedit" / "torch_extensions"


def _is_toolkit(root: Path) -> bool:
    return (root / "bin" / "nvcc").is_file() and (root / "include" / "cuda_runtime.h").is_file()


def find_toolkit() -> Toolkit:
    """Locate the CUDA toolkit used for the build.

    Raises:
        CudaOpsBuildError: no toolkit (nvcc and headers) found, or its nvcc does not run.
    """
    candidates: list[Path] = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(Path(os.environ[var]))
            break
    else:
        on_path = shutil.which("nvcc")
        if on_path:
            candidates.append(Path(on_path).resolve().parent.parent)
        candidates.append(Path("/usr/local/cuda"))
    home = next((c for c in candidates if _is_toolkit(c)), None)
    if home is None:
        looked = ", ".join(str(c) for c in candidates) or "nothing (no nvcc on PATH)"
        raise CudaOpsBuildError(f"no CUDA toolkit found (looked at {looked}; set CUDA_HOME to a folder "
                                "with bin/nvcc and include/cuda_runtime.h)")
    nvcc = home / "bin" / "nvcc"
    try:
        out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise CudaOpsBuildError(f"{nvcc} --version failed: {exc}") from exc
    match = re.search(r"release (\d+\.\d+)", out)
    if match is None:
        raise CudaOpsBuildError(f"cannot read the CUDA release from `{nvcc} --version`: {out.strip()[:200]!r}")
    return Toolkit(home=home, nvcc=nvcc, version=match.group(1))


def check_versions(toolkit: Toolkit) -> None:
    """Refuse a toolkit whose major version differs from torch's CUDA; warn on a minor difference.

    Raises:
        CudaOpsBuildError: torch is a CPU-only build, or the major versions differ.
    """
    if torch.version.cuda is None:
        raise CudaOpsBuildError(f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None)")
    torch_major, torch_minor = (int(v) for v in torch.version.cuda.split(".")[:2])
    nvcc_major, nvcc_minor = (int(v) for v in toolkit.version.split(".")[:2])
    if nvcc_major != torch_major:
        raise CudaOpsBuildError(f"nvcc {toolkit.version} ({toolkit.nvcc}) does not match torch's CUDA "
                                f"{torch.version.cuda}: install CUDA {torch_major}.x or point CUDA_HOME at it")
    if nvcc_minor != torch_minor:
        logger.warning("nvcc %s differs from torch's CUDA %s in the minor version; building anyway",
                       toolkit.version, torch.version.cuda)


def arch_list() -> list[str]:
    """Target compute capabilities, e.g. ``["8.0", "9.0+PTX"]`` (``+PTX`` on the highest)."""
    env = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if env and env != "native":
        archs = [a for a in re.split(r"[;\s]+", env) if a]
        bad = [a for a in archs if not re.fullmatch(r"\d+\.\d+a?(\+PTX)?", a)]
        if bad:
            raise CudaOpsBuildError(f"TORCH_CUDA_ARCH_LIST: expected numbers such as '8.0;9.0+PTX', got {env!r}")
        return archs
    if torch.cuda.is_available():
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        archs = [f"{major}.{minor}" for major, minor in caps]
    else:
        archs = list(DEFAULT_ARCHS)
    archs[-1] += "+PTX"
    return archs


def gencode_flags(archs: list[str]) -> list[str]:
    """nvcc ``-gencode`` flags for ``archs`` (SASS for each, PTX where marked ``+PTX``)."""
    flags = []
    for arch in archs:
        number = arch.replace("+PTX", "")
        major, minor = number.rstrip("a").split(".")
        if (int(major), int(minor)) < _MIN_SUPPORTED_ARCH:
            raise CudaOpsBuildError(f"compute capability {number} is below {'.'.join(map(str, _MIN_SUPPORTED_ARCH))}, "
                                    "the oldest CUDA 13 supports")
        code = number.replace(".", "")
        flags.append(f"-gencode=arch=compute_{code},code=sm_{code}")
        if arch.endswith("+PTX"):
            flags.append(f"-gencode=arch=compute_{code},code=compute_{code}")
    return flags


def source_hash(extra: tuple[str, ...] = ()) -> str:
    """sha256 over the sources and headers, plus ``extra`` strings (flags, versions)."""
    digest = hashlib.sha256()
    for name in SOURCES + HEADERS:
        digest.update(name.encode())
        digest.update((CSRC / name).read_bytes())
    for item in extra:
        digest.update(item.encode())
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """Everything that determines one build: where it goes and with which flags."""

    toolkit: Toolkit
    archs: tuple[str, ...]
    build_dir: Path
    name: str
    cuda_flags: tuple[str, ...]


def plan(root: Path | None = None) -> BuildPlan:
    """Work out the build folder and flags without building anything (cheap: runs ``nvcc --version``).

    Raises:
        CudaOpsBuildError: no usable toolkit, version mismatch, or a bad ``TORCH_CUDA_ARCH_LIST``.
    """
    toolkit = find_toolkit()
    check_versions(toolkit)
    archs = arch_list()
    cuda_flags = (*_NVCC_FLAGS, *gencode_flags(archs))
    digest = source_hash((torch.__version__, str(torch.version.cuda), toolkit.version, *_CXX_FLAGS, *cuda_flags))
    tag = re.sub(r"[^A-Za-z0-9.]+", "_", f"torch{torch.__version__}-cu{torch.version.cuda}-nvcc{toolkit.version}")
    build_dir = (root or extensions_root()) / "stylegan2_ops" / f"{tag}-{digest[:16]}"
    return BuildPlan(toolkit=toolkit, archs=tuple(archs), build_dir=build_dir,
                     name=f"{EXTENSION_PREFIX}_{digest[:8]}", cuda_flags=cuda_flags)


def library_path(p: BuildPlan) -> Path:
    """Where the built shared library lives (exists once a build has succeeded)."""
    suffix = ".pyd" if os.name == "nt" else ".so"  # torch.utils.cpp_extension.LIB_EXT
    return p.build_dir / f"{p.name}{suffix}"


def _summarise(text: str, limit: int = 300) -> str:
    """The first compiler error lines of a build log, on one line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.search(r"\berror\b", ln, re.IGNORECASE) and "Error building" not in ln]
    picked = errors[:2] or lines[-2:]
    summary = " | ".join(picked)
    return summary if len(summary) <= limit else summary[: limit - 3] + "..."


def build(root: Path | None = None, *, verbose: bool = False) -> tuple[ModuleType, BuildPlan, float | None]:
    """Build (if needed) and import the extension.

    Args:
        root: folder holding the builds (default :func:`extensions_root`).
        verbose: let torch/ninja print the compiler commands.

    Returns:
        (module, plan, seconds spent compiling or ``None`` when a cached build was loaded).

    Raises:
        CudaOpsBuildError: no toolkit, version mismatch, compile or import failure; the compiler
            output is kept in ``<build dir>/build-error.log``.
    """
    p = plan(root)
    p.build_dir.mkdir(parents=True, exist_ok=True)
    # Imported here: importing cpp_extension probes for a CUDA runtime and logs a warning on CPU-only machines.
    from torch.utils import cpp_extension

    with exclusive_lock(p.build_dir / BUILD_LOCK,
                        on_wait=lambda: logger.info("waiting for another process that is building %s", p.build_dir)):
        # We hold the only lock soundedit builders take, so a torch lock file here is stale.
        (p.build_dir / "lock").unlink(missing_ok=True)
        cached = library_path(p).exists()
        start = time.perf_counter()
        saved_home = cpp_extension.CUDA_HOME
        # torch resolves CUDA_HOME once at import, possibly to a wrong folder (see module docstring);
        # its JIT build reads this module attribute, so point it at our toolkit for this build only.
        cpp_extension.CUDA_HOME = str(p.toolkit.home)
        try:
            module = cpp_extension.load(
                name=p.name,
                sources=[str(CSRC / s) for s in SOURCES],
                extra_cflags=list(_CXX_FLAGS),
                extra_cuda_cflags=list(p.cuda_flags),
                extra_include_paths=[str(CSRC)],
                build_directory=str(p.build_dir),
                with_cuda=True,
                verbose=verbose,
            )
        except (RuntimeError, OSError, ImportError, subprocess.SubprocessError) as exc:
            log = p.build_dir / "build-error.log"
            log.write_text(str(exc))
            raise CudaOpsBuildError(f"building the CUDA ops failed: {_summarise(str(exc))}", log=log) from exc
        finally:
            cpp_extension.CUDA_HOME = saved_home
        (p.build_dir / "build-error.log").unlink(missing_ok=True)
    seconds = None if cached else time.perf_counter() - start
    if seconds is not None:
        logger.info("built the CUDA StyleGAN2 ops in %.0f s into %s", seconds, p.build_dir)
    return module, p, seconds
