"""HTML pages of the front door: Jinja2 templates in conveyor/templates/, autoescaped.

A minimal loader until the shared page environment (one for every report) is on main; then this
module folds into it. Autoescape is on, so every value reaches the page as text; a name a
template uses but the caller did not pass is an error (StrictUndefined), not an empty cell.
"""
from __future__ import annotations

import functools

import jinja2


@functools.cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("conveyor"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **context: object) -> str:
    """Template `template` of conveyor/templates/ rendered with `context`."""
    return environment().get_template(template).render(**context)
