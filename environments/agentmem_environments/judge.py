"""An optional judge model for benchmarks whose official score is an LLM's verdict (LongMemEval, InfBench summaries).

The judge is any litellm model string given with ``agentmem eval
--judge-model`` (or the ``judge_model`` knob). It is asked yes/no questions
rendered from this package's Jinja2 templates (``prompts/judge_*.j2``) and
its answer is read as "yes" anywhere in the first words. The embedded local
model is refused: a 0.5B model's verdicts are noise, and a score built on
them would look like a measurement.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2

from agentmem.errors import ConfigError

__all__ = ["Judge", "render_prompt"]


@lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("agentmem_environments", "prompts"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_prompt(name: str, **context: Any) -> str:
    """Render ``agentmem_environments/prompts/<name>.j2``."""
    return _templates().get_template(f"{name}.j2").render(**context).strip()


class Judge:
    """Yes/no verdicts from a strong model (never the embedded local one)."""

    def __init__(self, model: str | Any, *, env: str, api_base: str | None = None) -> None:
        if isinstance(model, str):
            name = model.strip()
            if not name:
                raise ConfigError(
                    f"{env}: --judge-model is empty; give a strong model, e.g. --judge-model openai/gpt-4o"
                )
            if name == "local" or name.startswith("local/"):
                raise ConfigError(
                    f"{env}: --judge-model {name} is the small embedded model, whose verdicts are noise; "
                    "give a strong model (e.g. openai/gpt-4o) or leave the judge out and read the token F1"
                )
            from agentmem.llm import LLM

            self.llm: Any = LLM(name, api_base=api_base, max_tokens=8)
            self.model = name
        else:  # a ready ChatModel (tests, library users)
            self.llm = model
            self.model = str(getattr(model, "model", type(model).__name__))
        self.calls = 0

    def ask(self, template: str, **context: Any) -> bool:
        """Render ``template`` with ``context``, ask the judge, and read its yes or no."""
        prompt = render_prompt(template, **context)
        reply = self.llm.complete([{"role": "user", "content": prompt}], max_tokens=8, caller=f"judge.{template}")
        self.calls += 1
        return "yes" in " ".join(str(reply).lower().split()[:3])
