"""Label-to-prompt templates: how a class label becomes a CLIP text prompt."""

from __future__ import annotations

import string
from collections.abc import Sequence

from soundedit.errors import InputError

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


def check_template(template: str, what: str = "--template", *, fields: Sequence[str] = ("label",)) -> str:
    """Return ``template`` if it has exactly one placeholder, ``{F}`` for an F in ``fields``, else raise.

    A template is a :meth:`str.format` string; any other placeholder (``{x}``, ``{0}``), a lone brace or a
    format spec (``{label:>9}``) would otherwise fail inside ``str.format`` after the embeddings were
    computed.  Literal braces are written doubled: ``{{`` and ``}}``.

    Args:
        template: the prompt template as the user wrote it.
        what: the flag or setting it came from (``"--template"``, ``"template"``).
        fields: the allowed placeholder names (``""`` stands for ``{}``).

    Raises:
        InputError: "--template: expected one {label} placeholder (write literal braces as {{ and }}), got ...".
    """
    allowed = " or ".join("{" + f + "}" for f in fields)
    expected = f"expected a text with one {allowed} placeholder (write literal braces as {{{{ and }}}})"
    if not isinstance(template, str):
        raise InputError(f"{what}: {expected}, got {template!r}")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:  # a lone "{" or "}"
        raise InputError(f"{what}: {expected}, got {template!r} ({exc})") from None
    found = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in fields or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise InputError(f"{what}: {expected}, got {template!r} (unknown placeholder {shown})")
        found.append(name)
    if len(found) != 1:
        raise InputError(f"{what}: {expected}, got {template!r} ({len(found)} placeholders)")
    return template


def fill_template(template: str, text: str, what: str = "--template", *, fields: Sequence[str] = ("label",)) -> str:
    """``template`` (checked by :func:`check_template`) with its one placeholder replaced by ``text``."""
    check_template(template, what, fields=fields)
    return template.format(text, **{f: text for f in fields if f})


def label_to_prompt(label: str, template: str = DEFAULT_TEMPLATE) -> str:
    """Fill ``template`` (which must contain one ``{label}``) with the cleaned label.

    Raises:
        InputError (a ValueError): the template has no ``{label}`` field, or other placeholders.
    """
    return fill_template(template, clean_label(label), "template")
