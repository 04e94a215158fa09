"""The engine's Jinja2 templates: the seed program skeleton and every proposer prompt."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2

_HERE = Path(__file__).parent
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(_HERE)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)


@cache
def load(name: str) -> jinja2.Template:
    """The template ``name`` from this folder."""
    return _ENV.get_template(name)


def render(name: str, **values: object) -> str:
    return load(name).render(**values).strip() + "\n"
