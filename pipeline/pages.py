"""Every HTML page Conveyor writes is a Jinja2 template, rendered through `render` here.

Templates live beside the code that fills them, in `<package>/templates/` (installed with the
package: setup.py's package_data), and extend `page.html.j2` (this package's `templates/`): one
self-contained document, inline CSS, no scripts. Autoescape is on for every template, so text from
a span, a request or an error message reaches the page as text; a name the template uses but the
caller did not pass is an error (StrictUndefined), not an empty cell.

This module sits in `pipeline/`, the lowest layer that writes a page (the model card after
evaluation) and below both report writers (`monitoring/`, `conveyor/local/`).
"""
from __future__ import annotations

import functools
import math

import jinja2

from pipeline.validation import pct

MISSING = "–"


def number(value: float | None, spec: str = ".4f", missing: str = MISSING) -> str:
    """`value` formatted by `spec` ("nan" for NaN), `missing` for None: the filter `number`."""
    if value is None:
        return missing
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return format(value, spec)


def count(value: int) -> str:
    """12,345: the filter `count`."""
    return f"{value:,}"


@functools.cache
def environment(package: str) -> jinja2.Environment:
    """The environment for `package`'s templates (and the shared ones), with the common filters."""
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.PackageLoader(name) for name in dict.fromkeys([package, "pipeline"])]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(number=number, count=count, percent=pct)
    return env


def render(package: str, template: str, **context: object) -> str:
    """`package`'s template `template` rendered with `context`."""
    return environment(package).get_template(template).render(**context)
