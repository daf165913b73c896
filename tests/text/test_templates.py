"""Prompt templates: one placeholder, checked before str.format can fail on a stray brace."""

from __future__ import annotations

import pytest

from soundedit.errors import InputError
from soundedit.text.templates import check_template, fill_template, label_to_prompt


@pytest.mark.parametrize("template, fields, text, expected", [
    ("the sound of {label}", ("label",), "chirping birds", "the sound of chirping birds"),
    ("{label}", ("label",), "rain", "rain"),
    ("a {{literal}} {label}", ("label",), "dog", "a {literal} dog"),
    ("{}", ("", "label"), "dog", "dog"),
    ("the sound of {}", ("", "label"), "dog", "the sound of dog"),
    ("the sound of {label}", ("", "label"), "dog", "the sound of dog"),
])
def test_good_templates_are_filled(template, fields, text, expected):
    assert check_template(template, fields=fields) == template
    assert fill_template(template, text, fields=fields) == expected


@pytest.mark.parametrize("template, why", [
    ("{label} {other}", "unknown placeholder {other}"),
    ("{label} {0}", "unknown placeholder {0}"),
    ("{label} {}", "unknown placeholder {}"),
    ("{label} }", "Single '}' encountered"),
    ("{label} {", "Single '{' encountered"),
    ("{label:>9}", "unknown placeholder {label:>9}"),
    ("{label!r}", "unknown placeholder {label!r}"),
    ("{label.upper}", "unknown placeholder {label.upper}"),
    ("{label} {label}", "2 placeholders"),
    ("the sound", "0 placeholders"),
    ("{{label}}", "0 placeholders"),
])
def test_bad_templates_are_refused_with_the_allowed_placeholder(template, why):
    with pytest.raises(InputError) as info:
        check_template(template, "--template")
    msg = str(info.value)
    assert msg.startswith("--template: expected a text with one {label} placeholder (write literal braces as {{ and }})")
    assert f"got {template!r}" in msg and why in msg and "\n" not in msg


def test_label_to_prompt_refuses_stray_placeholders_as_input_errors():
    assert label_to_prompt("chirping_birds") == "the sound of chirping birds"
    with pytest.raises(InputError, match=r"template: .* got '\{label\} \{x\}' \(unknown placeholder \{x\}\)"):
        label_to_prompt("dog", "{label} {x}")
    with pytest.raises(ValueError):  # InputError is a ValueError, as before
        label_to_prompt("dog", "no placeholder")
