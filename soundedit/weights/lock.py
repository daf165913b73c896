"""Reading, validating and pinning ``weights.lock``.

``weights.lock`` is a TOML file with one table per checkpoint::

    [weights.clip-vit-b-32]
    file = "ViT-B-32.pt"
    urls = ["https://openaipublic.azureedge.net/clip/models/40d3.../ViT-B-32.pt"]
    sha256 = "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
    size = "unknown"
    layout = "openai-clip-pt"
    licence = "MIT (openai/CLIP)"
    description = "OpenAI CLIP ViT-B/32 (the paper's CLIP model), TorchScript archive"

``sha256`` and ``size`` may be the string ``"unknown"`` until someone pins them
(:func:`pin_entry`, ``soundedit weights pin NAME``).  The file is found, in order,
at ``$SOUNDEDIT_WEIGHTS_LOCK``, at the top of a source checkout, or as the copy
packaged inside :mod:`soundedit.weights`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from pathlib import Path

from soundedit.errors import InputError

UNKNOWN = "unknown"
LOCK_ENV = "SOUNDEDIT_WEIGHTS_LOCK"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_LAYOUT = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_REQUIRED = ("file", "urls", "sha256", "size", "layout", "licence", "description")
_OPTIONAL = ("source", "notes")


@dataclasses.dataclass(frozen=True)
class WeightsEntry:
    """One checkpoint of weights.lock.

    Attributes:
        name: the key users type (``"landscape-256"``).
        file: the file's own name (kept in the cache, so loaders can read its suffix).
        urls: mirrors, tried in order.
        sha256: lower-case hex digest, or ``None`` when not pinned yet.
        size: bytes, or ``None`` when unknown.
        layout: file layout tag (``rosinality-stylegan2-pt``, ``nvidia-stylegan2-pkl``, ...).
        licence: licence of the weights, as published.
        description: one line on what the file is.
        source: where the file is published / documented (optional).
        notes: anything a user should know before using it (optional).
    """

    name: str
    file: str
    urls: tuple[str, ...]
    sha256: str | None
    size: int | None
    layout: str
    licence: str
    description: str
    source: str = ""
    notes: str = ""

    @property
    def pinned(self) -> bool:
        """Whether the expected sha256 is known."""
        return self.sha256 is not None

    def to_dict(self) -> dict:
        """Plain data (``None`` for unknown hash/size)."""
        data = dataclasses.asdict(self)
        data["urls"] = list(self.urls)
        return data


@dataclasses.dataclass(frozen=True)
class Lock:
    """A parsed weights.lock: its path and its entries by name (file order kept)."""

    path: Path
    entries: dict[str, WeightsEntry]

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self):
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, name: str) -> WeightsEntry:
        """The entry called ``name``.

        Raises:
            InputError: unknown name; the message lists close matches.
        """
        try:
            return self.entries[name]
        except KeyError:
            raise InputError(f"unknown weights name {name!r}{self.suggest(name)}; "
                             "`soundedit weights list` shows every name") from None

    def suggest(self, name: str) -> str:
        """``" (did you mean: a, b?)"`` for close matches of ``name``, or ``""``."""
        close = difflib.get_close_matches(name, list(self.entries), n=3, cutoff=0.5)
        return f" (did you mean: {', '.join(close)}?)" if close else ""


# ---------------------------------------------------------------------------------------------
# Locating the file


def packaged_lock_path() -> Path:
    """The copy of weights.lock shipped inside the package (package data)."""
    return Path(__file__).with_name("weights.lock")


def checkout_lock_path() -> Path | None:
    """The top-level weights.lock of a source checkout, if this package runs from one."""
    root = Path(__file__).resolve().parents[2]
    candidate = root / "weights.lock"
    return candidate if candidate.is_file() and (root / "pyproject.toml").is_file() else None


def lock_path() -> Path:
    """Where weights.lock is read from: ``$SOUNDEDIT_WEIGHTS_LOCK``, the checkout's, or the packaged copy.

    Raises:
        InputError: ``$SOUNDEDIT_WEIGHTS_LOCK`` names a file that does not exist.
    """
    override = os.environ.get(LOCK_ENV, "").strip()
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise InputError(f"{LOCK_ENV}: expected an existing weights.lock file, got {override!r}")
        return path
    return checkout_lock_path() or packaged_lock_path()


# ---------------------------------------------------------------------------------------------
# Parsing

_cache: dict[tuple[str, int, int], Lock] = {}


def load_lock(path: str | os.PathLike | None = None) -> Lock:
    """Parse and validate weights.lock (cached until the file changes).

    Args:
        path: the file; default :func:`lock_path`.

    Raises:
        InputError: unreadable TOML, or an entry with a missing/invalid field (the
            message names the file, the entry and the field).
    """
    p = Path(path) if path is not None else lock_path()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"weights.lock: expected a file at {p}, found none") from None
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _cache:
        _cache.clear()
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{_lock_what(p)}: expected a UTF-8 TOML weights.lock, got {str(p)!r} with a non-UTF-8 "
                             f"byte at offset {exc.start}") from None
        except OSError as exc:
            raise InputError(f"{_lock_what(p)}: cannot read {str(p)!r} ({exc.strerror or exc})") from None
        _cache[key] = parse_lock(text, path=p)
    return _cache[key]


def _lock_what(path: Path) -> str:
    """How to name the lock file in messages: the environment variable when it chose the file."""
    override = os.environ.get(LOCK_ENV, "").strip()
    try:
        if override and Path(override).expanduser().resolve() == path.resolve():
            return LOCK_ENV
    except OSError:
        pass
    return "weights.lock"


def parse_lock(text: str, *, path: Path) -> Lock:
    """Parse weights.lock text; ``path`` only names the file in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    version = data.get("version")
    if version != 1:
        raise InputError(f"{path}: expected 'version = 1' at the top, got {version!r}")
    unknown_top = set(data) - {"version", "weights"}
    if unknown_top:
        raise InputError(f"{path}: unknown top-level keys {sorted(unknown_top)} (expected 'version' and [weights.NAME] tables)")
    tables = data.get("weights")
    if not isinstance(tables, dict) or not tables:
        raise InputError(f"{path}: expected at least one [weights.NAME] table, found none")
    entries = {name: _parse_entry(name, table, path) for name, table in tables.items()}
    return Lock(path=path, entries=entries)


def _parse_entry(name: str, table: object, path: Path) -> WeightsEntry:
    where = f"{path}: entry {name!r}"
    if not _NAME.match(name):
        raise InputError(f"{where}: names must be lower-case letters, digits, '.', '_' or '-'")
    if not isinstance(table, dict):
        raise InputError(f"{where}: expected a table of fields, got {type(table).__name__}")
    missing = [f for f in _REQUIRED if f not in table]
    if missing:
        raise InputError(f"{where}: missing field(s) {', '.join(missing)}")
    extra = set(table) - set(_REQUIRED) - set(_OPTIONAL)
    if extra:
        raise InputError(f"{where}: unknown field(s) {', '.join(sorted(extra))} "
                         f"(allowed: {', '.join(_REQUIRED + _OPTIONAL)})")

    def text_field(field: str, *, required: bool = True) -> str:
        value = table.get(field, "")
        if not isinstance(value, str) or (required and not value.strip()):
            raise InputError(f"{where}: field {field!r} must be a non-empty string, got {value!r}")
        return value.strip()

    file = text_field("file")
    if "/" in file or "\\" in file or file in (".", ".."):
        raise InputError(f"{where}: field 'file' must be a plain file name, got {file!r}")
    urls = table["urls"]
    if (not isinstance(urls, list) or not urls
            or not all(isinstance(u, str) and u.startswith(("https://", "http://")) for u in urls)):
        raise InputError(f"{where}: field 'urls' must be a non-empty list of http(s) URLs, got {urls!r}")
    sha = table["sha256"]
    if not (sha == UNKNOWN or (isinstance(sha, str) and _HEX64.match(sha))):
        raise InputError(f"{where}: field 'sha256' must be 64 lower-case hex digits or \"unknown\", got {sha!r}")
    size = table["size"]
    if not (size == UNKNOWN or (isinstance(size, int) and not isinstance(size, bool) and size > 0)):
        raise InputError(f"{where}: field 'size' must be a positive byte count or \"unknown\", got {size!r}")
    layout = text_field("layout")
    if not _LAYOUT.match(layout):
        raise InputError(f"{where}: field 'layout' must be a lower-case tag like 'rosinality-stylegan2-pt', got {layout!r}")
    return WeightsEntry(
        name=name, file=file, urls=tuple(urls),
        sha256=None if sha == UNKNOWN else sha,
        size=None if size == UNKNOWN else size,
        layout=layout, licence=text_field("licence"), description=text_field("description"),
        source=text_field("source", required=False), notes=text_field("notes", required=False),
    )


# ---------------------------------------------------------------------------------------------
# Pinning (a careful, comment-preserving rewrite of two lines of one table)


def pin_entry(name: str, sha256: str, size: int, *, path: str | os.PathLike | None = None) -> Path:
    """Record ``sha256`` and ``size`` for entry ``name`` in weights.lock, keeping everything else.

    Only the ``sha256 = ...`` and ``size = ...`` lines of ``[weights.NAME]`` change;
    comments, order and formatting stay.  The result is parsed again before it
    replaces the file (atomically), so a pin can never leave a broken lock.
    When the lock is a checkout's top-level file, the packaged copy is updated too.

    Returns:
        The path written.

    Raises:
        InputError: unknown name, or a malformed digest/size.
    """
    from soundedit.fileio import write_text

    if not _HEX64.match(sha256):
        raise InputError(f"pin {name!r}: sha256 must be 64 lower-case hex digits, got {sha256!r}")
    if not isinstance(size, int) or size <= 0:
        raise InputError(f"pin {name!r}: size must be a positive byte count, got {size!r}")
    target = Path(path) if path is not None else lock_path()
    lock = load_lock(target)
    lock.get(name)  # unknown name -> InputError with suggestions
    lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
    header = re.compile(r"^\s*\[\s*weights\.(?:\"(?P<q>[^\"]+)\"|(?P<b>[A-Za-z0-9._-]+))\s*\]\s*(#.*)?$")
    start = next((i for i, line in enumerate(lines)
                  if (m := header.match(line)) and (m.group("q") or m.group("b")) == name), None)
    if start is None:
        raise InputError(f"{target}: cannot find the table header [weights.{name}] to pin (is it written inline?)")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    replaced = set()
    for i in range(start + 1, end):
        m = re.match(r"^(\s*)(sha256|size)(\s*=\s*)[^#\n]*?(\s*#.*)?(\r?\n)?$", lines[i])
        if m:
            key = m.group(2)
            value = f'"{sha256}"' if key == "sha256" else str(size)
            lines[i] = f"{m.group(1)}{key}{m.group(3)}{value}{m.group(4) or ''}{m.group(5) or ''}"
            replaced.add(key)
    if replaced != {"sha256", "size"}:
        raise InputError(f"{target}: entry {name!r} has no one-line 'sha256 = ...' and 'size = ...' fields to pin")
    new_text = "".join(lines)
    entry = parse_lock(new_text, path=target).get(name)
    if entry.sha256 != sha256 or entry.size != size:  # the rewrite must mean exactly what we wanted
        raise InputError(f"{target}: pinning {name!r} did not round-trip; edit the file by hand")
    write_text(target.resolve(), new_text)
    packaged = packaged_lock_path()
    if checkout_lock_path() is not None and target.resolve() == checkout_lock_path().resolve() and packaged.is_file():
        write_text(packaged, new_text)
    _cache.clear()
    return target
