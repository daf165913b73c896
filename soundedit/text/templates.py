"""Label-to-prompt templates: how a class label becomes a CLIP text prompt."""

from __future__ import annotations

#: The default prompt (the paper's zero-shot wording style).
DEFAULT_TEMPLATE = "the sound of {label}"

#: Extra wordings, e.g. for prompt ensembling in zero-shot evaluation.
SOUND_TEMPLATES = (
    "the sound of {label}",
    "a sound of {label}",
    "the sound of a {label}",
    "a recording of {label}",
    "{label}",
)


def clean_label(label: str) -> str:
    """Dataset label spellings to words: ``"chirping_birds"`` -> ``"chirping birds"``."""
    return " ".join(label.replace("_", " ").replace("-", " ").split())


def label_to_prompt(label: str, template: str = DEFAULT_TEMPLATE) -> str:
    """Fill ``template`` (which must contain ``{label}``) with the cleaned label.

    Raises:
        ValueError: the template has no ``{label}`` field.
    """
    if "{label}" not in template:
        raise ValueError(f"template: expected a string containing '{{label}}', got {template!r}")
    return template.format(label=clean_label(label))
