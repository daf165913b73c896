"""Text augmentation for alignment training (the paper's: WordNet synonyms, permutation, insertion).

Operations, each applied with its own probability (``TextAugmentConfig``):

- synonym replacement: one word is replaced by a WordNet synonym;
- synonym insertion: a WordNet synonym of one word is inserted at a random position;
- random permutation: the words are shuffled;
- random word insertion: a word from ``vocabulary`` (e.g. all words of the
  dataset's labels) is inserted at a random position.

Every random choice comes from the ``random.Random`` passed in, so results are
deterministic under a seed (see :func:`augment_seed`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

# Function words carry no sound semantics and have noisy WordNet entries.
_STOPWORDS = frozenset(
    "a an the of on in at to for from with by and or is are was be it its this that as into".split())


@dataclass(frozen=True)
class TextAugmentConfig:
    """Probabilities of each augmentation (0 disables it)."""

    p_synonym_replace: float = 0.3
    p_synonym_insert: float = 0.2
    p_permute: float = 0.1
    p_random_insert: float = 0.1


def synonyms(word: str, wordnet=None) -> list[str]:
    """WordNet synonyms of ``word`` (lemma names of all its synsets), without the word itself.

    Args:
        word: one word (case-insensitive).
        wordnet: an nltk WordNet reader; default :func:`soundedit.text.wordnet_data.load_wordnet`.

    Returns:
        Sorted unique synonyms with underscores turned into spaces.
    """
    if wordnet is None:
        from soundedit.text.wordnet_data import load_wordnet

        wordnet = load_wordnet()
    key = word.lower()
    found = {lemma.name().replace("_", " ").lower() for synset in wordnet.synsets(key) for lemma in synset.lemmas()}
    found.discard(key)
    return sorted(found)


def augment_text(text: str, *, rng: random.Random, config: TextAugmentConfig = TextAugmentConfig(),
                 vocabulary: Sequence[str] = (), wordnet=None) -> str:
    """One random augmentation of ``text``.

    Args:
        text: the caption or prompt.
        rng: source of every random choice (seed it for reproducibility).
        config: the probability of each operation.
        vocabulary: words for random insertion (the operation is skipped when empty).
        wordnet: nltk WordNet reader (loaded on first need when ``None``).

    Returns:
        The augmented text (``text`` itself when no operation fired or none applied).
    """
    words = text.split()
    if not words:
        return text

    def content_positions() -> list[int]:
        return [i for i, w in enumerate(words) if w.lower() not in _STOPWORDS and w.isalpha()]

    def pick_synonym() -> tuple[int, str] | None:
        positions = content_positions()
        rng.shuffle(positions)
        for i in positions:
            options = synonyms(words[i], wordnet)
            if options:
                return i, rng.choice(options)
        return None

    if config.p_synonym_replace > 0 and rng.random() < config.p_synonym_replace:
        hit = pick_synonym()
        if hit is not None:
            words[hit[0]] = hit[1]
    if config.p_synonym_insert > 0 and rng.random() < config.p_synonym_insert:
        hit = pick_synonym()
        if hit is not None:
            words.insert(rng.randint(0, len(words)), hit[1])
    if config.p_random_insert > 0 and vocabulary and rng.random() < config.p_random_insert:
        words.insert(rng.randint(0, len(words)), rng.choice(vocabulary))
    if config.p_permute > 0 and len(words) > 1 and rng.random() < config.p_permute:
        rng.shuffle(words)
    return " ".join(words)


def content_words(texts: Sequence[str]) -> list[str]:
    """Sorted unique lower-case content words of ``texts`` (a ``vocabulary`` for random insertion)."""
    return sorted({w for t in texts for w in t.lower().split() if w.isalpha() and w not in _STOPWORDS})


def augment_seed(seed: int, epoch: int, index: int) -> int:
    """A per-(seed, epoch, sample) seed, so augmentation does not depend on batch order or resumes."""
    return (seed * 1_000_003 + epoch) * 1_000_033 + index
