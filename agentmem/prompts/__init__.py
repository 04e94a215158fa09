"""Jinja2 prompt templates shipped with agentmem (one ``.j2`` file per prompt)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("agentmem", "prompts"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def render(name: str, **context: Any) -> str:
    """Render ``agentmem/prompts/<name>.j2`` with ``context``."""
    return _env().get_template(f"{name}.j2").render(**context).strip()
