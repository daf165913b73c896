"""Offline WordNet 3.0 for nltk: install from Debian's packages, load without ``nltk.download``.

``python -m soundedit.text.wordnet_data install DIR`` copies the WordNet 3.0
database of Debian's ``wordnet-base`` (``/usr/share/wordnet``) and
``wordnet-sense-index`` packages into ``DIR/corpora/wordnet/`` under the names
nltk's ``WordNetCorpusReader`` opens, and writes the ``lexnames`` table that
Debian does not ship.  Point ``NLTK_DATA`` at ``DIR`` (the Makefile does) and
:func:`load_wordnet` finds it.  Files are copied, not linked, so the data stays
usable if the system packages are removed.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
from pathlib import Path

from soundedit.errors import InputError, SoundeditError

logger = logging.getLogger("soundedit")

#: Where Debian's wordnet-base and wordnet-sense-index put the WordNet 3.0 database.
DEBIAN_WORDNET = Path("/usr/share/wordnet")

#: The database files nltk's reader opens (its ``_FILES``), all shipped by the two Debian packages.
WORDNET_FILES = (
    "cntlist.rev",
    "index.sense",
    "index.adj", "index.adv", "index.noun", "index.verb",
    "data.adj", "data.adv", "data.noun", "data.verb",
    "adj.exc", "adv.exc", "noun.exc", "verb.exc",
)

# The 45 lexicographer files of WordNet 3.0 (lexnames(5WN)): number, name, syntactic
# category (1 noun, 2 verb, 3 adjective, 4 adverb).  data.* files refer to them by number.
LEXNAMES = (
    ("adj.all", 3), ("adj.pert", 3), ("adv.all", 4), ("noun.Tops", 1), ("noun.act", 1),
    ("noun.animal", 1), ("noun.artifact", 1), ("noun.attribute", 1), ("noun.body", 1),
    ("noun.cognition", 1), ("noun.communication", 1), ("noun.event", 1), ("noun.feeling", 1),
    ("noun.food", 1), ("noun.group", 1), ("noun.location", 1), ("noun.motive", 1),
    ("noun.object", 1), ("noun.person", 1), ("noun.phenomenon", 1), ("noun.plant", 1),
    ("noun.possession", 1), ("noun.process", 1), ("noun.quantity", 1), ("noun.relation", 1),
    ("noun.shape", 1), ("noun.state", 1), ("noun.substance", 1), ("noun.time", 1),
    ("verb.body", 2), ("verb.change", 2), ("verb.cognition", 2), ("verb.communication", 2),
    ("verb.competition", 2), ("verb.consumption", 2), ("verb.contact", 2), ("verb.creation", 2),
    ("verb.emotion", 2), ("verb.motion", 2), ("verb.perception", 2), ("verb.possession", 2),
    ("verb.social", 2), ("verb.stative", 2), ("verb.weather", 2), ("adj.ppl", 3),
)


def lexnames_text() -> str:
    """The ``lexnames`` file: ``NN<TAB>name<TAB>category`` per line, numbered from 00."""
    return "".join(f"{i:02d}\t{name}\t{cat}\n" for i, (name, cat) in enumerate(LEXNAMES))


def install(data_dir: str | os.PathLike, *, source: str | os.PathLike = DEBIAN_WORDNET) -> Path:
    """Copy WordNet 3.0 into ``data_dir/corpora/wordnet`` for nltk (idempotent).

    Files already present with the source's size are kept; others are copied
    atomically (temp file + rename), so an interrupted install is repaired by
    running it again.

    Args:
        data_dir: an nltk data folder (the value of ``NLTK_DATA``).
        source: the folder holding Debian's WordNet files.

    Returns:
        The ``corpora/wordnet`` folder.

    Raises:
        InputError: the source files are missing (names the Debian packages to install).
    """
    from soundedit.fileio import atomic_open, write_text

    src = Path(source)
    missing = [name for name in WORDNET_FILES if not (src / name).is_file()]
    if missing:
        raise InputError(
            f"WordNet 3.0 source {src}: missing {', '.join(missing)}; install the Debian packages with "
            "`sudo apt-get install wordnet-base wordnet-sense-index` (index.sense comes from wordnet-sense-index)")
    dest = Path(data_dir) / "corpora" / "wordnet"
    dest.mkdir(parents=True, exist_ok=True)
    copied = 0
    for name in WORDNET_FILES:
        target = dest / name
        if target.is_file() and target.stat().st_size == (src / name).stat().st_size:
            continue
        with open(src / name, "rb") as fin, atomic_open(target, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        copied += 1
    lexnames = dest / "lexnames"
    if not lexnames.is_file() or lexnames.read_text() != lexnames_text():
        write_text(lexnames, lexnames_text())
        copied += 1
    logger.info("WordNet 3.0 in %s (%d file(s) written)", dest, copied)
    return dest


def _candidate_roots() -> list[Path]:
    # NLTK_DATA read at call time (nltk.data.path is fixed when nltk is first imported).
    roots = [Path(p) for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    import nltk.data

    roots += [Path(p) for p in nltk.data.path if isinstance(p, (str, os.PathLike))]
    return roots


def find_wordnet() -> Path:
    """The installed ``corpora/wordnet`` folder found through ``NLTK_DATA`` and nltk's search path.

    Raises:
        SoundeditError: not installed (says how to install it).
    """
    for root in _candidate_roots():
        folder = root / "corpora" / "wordnet"
        if (folder / "lexnames").is_file() and (folder / "data.noun").is_file():
            return folder
    raise SoundeditError(
        "WordNet data not found in NLTK_DATA or nltk's data path; install it offline with "
        "`python -m soundedit.text.wordnet_data install DIR` and set NLTK_DATA=DIR (`make setup` does both)")


@functools.lru_cache(maxsize=4)
def load_wordnet(root: str | os.PathLike | None = None):
    """An nltk ``WordNetCorpusReader`` over local files (never calls ``nltk.download``).

    Args:
        root: a ``corpora/wordnet`` folder; default: :func:`find_wordnet`.
    """
    import warnings

    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    import nltk

    folder = Path(root) if root is not None else find_wordnet()
    # nltk (3.10+) only opens files below folders on nltk.data.path; register the data root
    # (DIR of DIR/corpora/wordnet) so a folder given here, or NLTK_DATA set after nltk was
    # first imported, is readable.
    data_root = str(folder.resolve().parent.parent)
    if data_root not in nltk.data.path:
        nltk.data.path.append(data_root)
    with warnings.catch_warnings():
        # No Open Multilingual WordNet here: English synonyms are all augmentation needs.
        warnings.simplefilter("ignore", UserWarning)
        return WordNetCorpusReader(str(folder), None)


def _main(argv: list[str]) -> int:
    usage = "usage: python -m soundedit.text.wordnet_data install DIR [--source /usr/share/wordnet]"
    if len(argv) not in (2, 4) or argv[0] != "install" or (len(argv) == 4 and argv[2] != "--source"):
        sys.stderr.write(usage + "\n")
        return 2
    source = argv[3] if len(argv) == 4 else DEBIAN_WORDNET
    try:
        dest = install(argv[1], source=source)
    except InputError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stderr.write(f"WordNet 3.0 installed in {dest}\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
