"""Settings: which LLM, where data and caches live, limits.

Each setting comes from the first of these that gives it:

1. an override passed to :func:`load_settings` (CLI flags; ``None`` means "not given"),
2. an environment variable ``AGENTMEM_<FIELD>`` (e.g. ``AGENTMEM_MODEL``,
   ``AGENTMEM_API_BASE``; ``AGENTMEM_EMBEDDING_PATH`` for ``embedding_model_path``),
3. a TOML config file: ``$AGENTMEM_CONFIG``, else ``./agentmem.toml``, else
   ``<user config dir>/agentmem/config.toml``; its keys are the field names,
4. the defaults below.

A bad value is a :class:`~agentmem.errors.ConfigError` whose one line names
the setting, where the value came from, and how to fix it.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentmem.errors import ConfigError

APP_NAME = "agentmem"


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def _default_cache() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME))


class Settings(BaseModel):
    """Everything agentmem reads from flags, environment and config file."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(
        "local",
        description='"local" (embedded llama.cpp, default model), "local/<known model>", or a litellm model string',
    )
    api_base: str | None = None
    api_key: str | None = None
    home: Path = Field(default_factory=_default_home)
    cache_dir: Path = Field(default_factory=_default_cache)
    chroma_host: str | None = None
    local_model_path: Path | None = None
    embedding_model_path: Path | None = None
    llm_timeout: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0, le=20)
    max_concurrency: int = Field(4, ge=1, le=1024)
    n_ctx: int = Field(8192, ge=256)
    n_threads: int | None = Field(None, ge=1)
    cache: bool = Field(True, description="keep deterministic LLM answers in an on-disk cache")
    cache_path: Path | None = Field(None, description="the LLM cache file (default <cache_dir>/llm-cache.sqlite)")
    cache_max_mb: int = Field(512, ge=1, description="size bound of the LLM cache; least recently used entries go first")

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError('the model is empty; use "local" or a litellm model string such as "openai/gpt-4o-mini"')
        if value.startswith("local/"):
            from agentmem.llm.models import KNOWN_MODELS

            name = value.removeprefix("local/")
            if name not in KNOWN_MODELS:
                raise ValueError(f"unknown local model '{name}'; known: {', '.join(KNOWN_MODELS)}")
        return value

    @field_validator("home", "cache_dir", "local_model_path", "embedding_model_path", "cache_path")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return None if value is None else Path(os.path.expandvars(str(value))).expanduser()

    @field_validator("api_base", "api_key", "chroma_host")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        return value or None

    @property
    def is_local(self) -> bool:
        """True when the model is the embedded llama.cpp one."""
        return self.model == "local" or self.model.startswith("local/")

    @property
    def llm_cache_path(self) -> Path:
        """Where the LLM cache lives: ``cache_path``, else ``<cache_dir>/llm-cache.sqlite``."""
        return self.cache_path if self.cache_path is not None else self.cache_dir / "llm-cache.sqlite"


# environment variable for each field (AGENTMEM_<FIELD>, one shorter alias)
ENV_VARS: dict[str, str] = {name: f"AGENTMEM_{name.upper()}" for name in Settings.model_fields}
ENV_VARS["embedding_model_path"] = "AGENTMEM_EMBEDDING_PATH"


def config_file_path() -> Path | None:
    """The config file in use: ``$AGENTMEM_CONFIG``, ``./agentmem.toml`` or the user one, if present."""
    explicit = os.environ.get("AGENTMEM_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} (from AGENTMEM_CONFIG) does not exist: fix or unset AGENTMEM_CONFIG")
        return path
    for candidate in (Path.cwd() / "agentmem.toml", Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


_TOML_WHERE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")


def toml_error(path: Path | str, exc: tomllib.TOMLDecodeError, what: str = "config file") -> ConfigError:
    """A TOML syntax error as one line: the file, line and column, the problem, and how to fix it."""
    message = str(exc)
    found = _TOML_WHERE.search(message)
    problem = _TOML_WHERE.sub("", message).strip() or "invalid TOML"
    if found and found.group(1):
        where = f"line {found.group(1)}, column {found.group(2)}"
    elif found:
        where = "the end of the file"
    else:
        where = "somewhere in it"
    problem = problem[:1].lower() + problem[1:]
    return ConfigError(f"{what} {path} is not valid TOML at {where}: {problem}; fix the syntax there (see https://toml.io)")


def read_toml(path: Path | str, what: str = "config file", fix: str = "give the path of a .toml file") -> dict[str, Any]:
    """Parse the TOML file at ``path``; every failure is one :class:`ConfigError` line."""
    path = Path(path).expanduser()
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist: {fix}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory: {fix}") from None
    except tomllib.TOMLDecodeError as exc:
        raise toml_error(path, exc, what) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text: save it as UTF-8 TOML") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read ({exc.strerror}): check its permissions") from None


def _read_file(path: Path) -> dict[str, Any]:
    data = read_toml(path, "config file", "fix or remove it")
    if isinstance(data.get("agentmem"), dict) and len(data) == 1:  # allow an [agentmem] table too
        data = data["agentmem"]
    unknown = sorted(set(data) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(
            f"config file {path} has unknown key(s) {', '.join(unknown)}: valid keys are {', '.join(Settings.model_fields)}"
        )
    out: dict[str, Any] = {}
    for key, value in data.items():
        # relative paths in a config file are relative to that file
        if key in {"home", "cache_dir", "local_model_path", "embedding_model_path", "cache_path"} and isinstance(value, str):
            expanded = Path(os.path.expandvars(value)).expanduser()
            value = expanded if expanded.is_absolute() else (path.parent / expanded)
        out[key] = value
    return out


def load_settings(**overrides: Any) -> Settings:
    """Build :class:`Settings` from overrides > environment > config file > defaults."""
    unknown = sorted(set(overrides) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}: valid ones are {', '.join(Settings.model_fields)}")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    path = config_file_path()
    if path is not None:
        for key, value in _read_file(path).items():
            values[key] = value
            sources[key] = f"config file {path}"

    for key, var in ENV_VARS.items():
        raw = os.environ.get(var)
        if raw is not None and raw.strip() != "":
            values[key] = raw.strip()
            sources[key] = f"environment variable {var}"

    for key, value in overrides.items():
        if value is not None:
            values[key] = value
            sources[key] = "the command line"

    try:
        return Settings(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err.get("loc") else "?"
        source = sources.get(field, "the defaults")
        given = values.get(field, "<default>")
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        raise ConfigError(
            f"bad value for setting '{field}' from {source}: {given!r} ({msg}): {_fix_for(field, source)}"
        ) from None


def _fix_for(field: str, source: str) -> str:
    if source.startswith("environment variable"):
        return f"fix or unset {ENV_VARS[field]}"
    if source.startswith("config file"):
        return f"fix '{field}' in that file"
    if source == "the command line":
        return "fix the flag's value"
    return "report this as a bug"
