"""Text side of alignment training: prompt templates and WordNet augmentation (offline data).

Nothing heavy at import: nltk is imported when WordNet is first needed.
"""

from soundedit.text.augment import TextAugmentConfig, augment_seed, augment_text, content_words, synonyms
from soundedit.text.templates import DEFAULT_TEMPLATE, SOUND_TEMPLATES, clean_label, label_to_prompt

__all__ = ["DEFAULT_TEMPLATE", "SOUND_TEMPLATES", "TextAugmentConfig", "augment_seed", "augment_text", "clean_label",
           "content_words", "label_to_prompt", "synonyms"]
