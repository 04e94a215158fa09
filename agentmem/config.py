"""Settings: which LLM, where data and caches live, limits. One :class:`Settings`, resolved in one place.

Each setting comes from the first of these layers that gives it (pydantic-settings
merges them; :class:`_Layers` below is the one source that does it):

1. a flag: a keyword passed to :func:`load_settings` (CLI flags, SDK arguments;
   ``None`` means "not given"),
2. an environment variable ``AGENTMEM_<FIELD>`` (e.g. ``AGENTMEM_MODEL``,
   ``AGENTMEM_API_BASE``, ``AGENTMEM_RECALL_BUDGET``; ``AGENTMEM_EMBEDDING_PATH``
   is accepted for ``embedding_model_path``),
3. a TOML config file: ``$AGENTMEM_CONFIG``, else ``./agentmem.toml``, else
   ``<user config dir>/agentmem/config.toml``; its keys are the field names,
4. the defaults below.

The model and its server travel together: an ``api_base`` or ``api_key``
written in a layer below the model's is used only when the model in force at
its own layer is the same one (or when no layer names a model at all), so
``--model openai/gpt-4o-mini`` never inherits the ``AGENTMEM_API_BASE`` that
goes with ``AGENTMEM_MODEL=hosted_vllm/...``. ``"local"`` names the embedded llama.cpp backend;
when a lower layer names a particular local model (``local/<name>``), a plain
``"local"`` means that one.

Unknown keys (in the file or as flags) and bad values are a
:class:`~agentmem.errors.ConfigError` whose one line names the setting, where
the value came from, and how to fix it.
"""

from __future__ import annotations

import os
import re
import threading
import tomllib
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from agentmem.errors import ConfigError
from agentmem.types import DEFAULT_RECALL_BUDGET

APP_NAME = "agentmem"

#: The longest reply the agent writes to a user when nothing says otherwise (chat, SDK).
DEFAULT_REPLY_TOKENS = 512
#: the first token limit of a structured reply whose schema is unbounded (agentmem.llm.structured)
DEFAULT_STRUCTURED_FIRST_TOKENS = 1024

ENV_PREFIX = "AGENTMEM_"
_PATH_FIELDS = (
    "home",
    "cache_dir",
    "local_model_path",
    "embedding_model_path",
    "cache_path",
    "server_registry",
    "locomo_data",
    "longmemeval_data",
    "memoryagentbench_data",
    "bfcl_dir",
)
#: where the embedding forward pass may run (``auto``: onnxruntime when it imports, else numpy)
EMBEDDING_BACKENDS = ("auto", "onnx", "numpy")
#: what turns a switch-or-path setting (``embedding_cache``) on or off rather than naming a directory
_SWITCH_WORDS = {
    "on": True,
    "1": True,
    "true": True,
    "yes": True,
    "off": False,
    "0": False,
    "false": False,
    "no": False,
    "none": False,
}
#: the settings that belong to the model: taken only from the model's own layer or a higher one
_PAIRED_WITH_MODEL = ("api_base", "api_key")
FLAGS, ENVIRONMENT, FILE, DEFAULTS = "the command line", "environment", "config file", "the defaults"


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def _default_cache() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME))


def _expanded(value: str | Path) -> Path:
    """``value`` with ``$VARS`` and ``~`` expanded."""
    return Path(os.path.expandvars(str(value))).expanduser()


def check_model_name(value: str) -> str:
    """``value`` stripped, or a ``ValueError`` saying why it names no model agentmem can use."""
    value = value.strip()
    if not value:
        raise ValueError('the model is empty; use "local" or a litellm model string such as "openai/gpt-4o-mini"')
    if value.startswith("local/"):
        from agentmem.llm.models import KNOWN_MODELS

        name = value.removeprefix("local/")
        if name not in KNOWN_MODELS:
            raise ValueError(f"unknown local model '{name}'; known: {', '.join(KNOWN_MODELS)}")
    return value


class Settings(BaseSettings):
    """Everything agentmem reads from flags, environment and config file (see the module's notes).

    ``Settings(**flags)`` and :func:`load_settings` resolve the same layers;
    :func:`load_settings` also turns a bad value into one line naming its source.
    """

    model_config = SettingsConfigDict(
        extra="forbid",
        protected_namespaces=(),
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        case_sensitive=False,
    )

    model: str = Field(
        "local",
        description='"local" (embedded llama.cpp, default model), "local/<known model>", or a litellm model string',
    )
    api_base: str | None = Field(None, description="the model's server, e.g. a `vllm serve` at http://host:8000/v1")
    api_key: str | None = None
    home: Path = Field(default_factory=_default_home, description="where memories and threads live")
    cache_dir: Path = Field(default_factory=_default_cache, description="models, datasets, LLM cache, server registry")
    chroma_host: str | None = None
    local_model_path: Path | None = None
    embedding_model_path: Path | None = Field(
        None, description="a directory with all-MiniLM-L6-v2's files (env AGENTMEM_EMBEDDING_PATH)"
    )
    recall_budget: int = Field(DEFAULT_RECALL_BUDGET, ge=0, le=1_000_000, description="token budget of each recall")
    max_reply_tokens: int = Field(
        DEFAULT_REPLY_TOKENS, ge=16, le=32_768, description="longest reply to a user, in tokens"
    )
    structured_first_tokens: int = Field(
        DEFAULT_STRUCTURED_FIRST_TOKENS,
        ge=64,
        le=131_072,
        description="first token limit of a structured reply whose schema does not bound it (a cut reply that does "
        "not loop is then given all the room the context leaves)",
    )
    llm_timeout: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0, le=20)
    max_concurrency: int = Field(4, ge=1, le=1024)
    n_ctx: int = Field(8192, ge=256)
    n_threads: int | None = Field(None, ge=1)
    cache: bool = Field(True, description="keep deterministic LLM answers in an on-disk cache")
    cache_path: Path | None = Field(None, description="the LLM cache file (default <cache_dir>/llm-cache.sqlite)")
    cache_max_mb: int = Field(
        512, ge=1, description="size bound of the LLM cache; least recently used entries go first"
    )
    embedding_backend: str = Field(
        "auto",
        description="where the embedder runs: auto (onnxruntime when installed), onnx, numpy",
    )
    embedding_threads: int = Field(
        0,
        ge=0,
        le=1024,
        description="threads of the embedder's forward pass (0: the library's default)",
    )
    embedding_cache: bool | Path = Field(
        True,
        description="the on-disk store of computed embeddings: on (<cache_dir>/embeddings/vectors), off, or a "
        "directory",
    )
    server_registry: Path | None = Field(
        None,
        description="where local llama.cpp servers register to be shared (default <cache_dir>/servers)",
    )
    share_server: bool = Field(
        True,
        description="attach to a live local server of the same model that another process started",
    )
    locomo_data: Path | None = Field(
        None,
        description="LoCoMo's locomo10.json (else the cached download, else the demo set)",
    )
    longmemeval_data: Path | None = Field(
        None,
        description="a file in LongMemEval's format (else the official file, else the fixture)",
    )
    memoryagentbench_data: Path | None = Field(
        None,
        description="MemoryAgentBench's parquet files or JSON rows (else the official files, else the fixture)",
    )
    bfcl_dir: Path | None = Field(None, description="a `pip install --no-deps --target` directory holding bfcl-eval")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (_Layers(settings_cls, init_settings, env_settings),)

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        return check_model_name(value)

    @field_validator(*_PATH_FIELDS)
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return None if value is None else _expanded(value)

    @field_validator("embedding_backend")
    @classmethod
    def _check_backend(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in EMBEDDING_BACKENDS:
            raise ValueError(f"not an embedding backend: use one of {', '.join(EMBEDDING_BACKENDS)}")
        return value

    @field_validator("embedding_cache", mode="before")
    @classmethod
    def _switch_or_path(cls, value: Any) -> Any:
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _SWITCH_WORDS:
                return _SWITCH_WORDS[word]
            return _expanded(value.strip())
        return _expanded(value) if isinstance(value, Path) else value

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


#: the environment variable of each field (AGENTMEM_<FIELD>); a few also answer to a shorter alias
ENV_VARS: dict[str, str] = {name: f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
ENV_ALIASES: dict[str, str] = {"embedding_model_path": "AGENTMEM_EMBEDDING_PATH"}
ENV_VARS.update(ENV_ALIASES)  # the name error messages give


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
    return ConfigError(
        f"{what} {path} is not valid TOML at {where}: {problem}; fix the syntax there (see https://toml.io)"
    )


def read_toml(
    path: Path | str, what: str = "config file", fix: str = "give the path of a .toml file"
) -> dict[str, Any]:
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
            f"config file {path} has unknown key(s) {', '.join(unknown)}: valid keys are "
            f"{', '.join(Settings.model_fields)}"
        )
    out: dict[str, Any] = {}
    for key, value in data.items():
        # relative paths in a config file are relative to that file
        is_path = key in _PATH_FIELDS or (key == "embedding_cache" and str(value).strip().lower() not in _SWITCH_WORDS)
        if is_path and isinstance(value, str):
            expanded = _expanded(value)
            value = expanded if expanded.is_absolute() else (path.parent / expanded)
        out[key] = value
    return out


class _Layers(PydanticBaseSettingsSource):
    """Flags > environment > config file, merged with the model's settings kept as a pair.

    One source rather than three so that the pairing rule (an ``api_base`` written
    below the model's layer for a different model stays behind) sees every layer,
    and so that each value's origin is known to :func:`load_settings`'s error
    messages.
    """

    def __init__(
        self, settings_cls: type[BaseSettings], init: PydanticBaseSettingsSource, env: PydanticBaseSettingsSource
    ) -> None:
        super().__init__(settings_cls)
        self.init, self.env = init, env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def _environment(self) -> dict[str, Any]:
        values = dict(self.env())
        for field, alias in ENV_ALIASES.items():
            raw = os.environ.get(alias, "").strip()
            if field not in values and raw:
                values[field] = raw
        return {k: v.strip() if isinstance(v, str) else v for k, v in values.items()}

    def __call__(self) -> dict[str, Any]:
        path = config_file_path()
        layers: list[tuple[str, dict[str, Any]]] = [
            (FLAGS, {k: v for k, v in self.init().items() if v is not None}),
            (ENVIRONMENT, self._environment()),
            (f"{FILE} {path}", _read_file(path) if path is not None else {}),
        ]
        merged: dict[str, Any] = {}
        origins: dict[str, str] = {}
        rank: dict[str, int] = {}
        for index, (where, values) in enumerate(layers):
            for key, value in values.items():
                if key not in merged:
                    merged[key], origins[key], rank[key] = value, where, index
        model_rank = rank.get("model", len(layers))
        if isinstance(merged.get("model"), str) and merged["model"].strip() == "local":
            # "local" is the backend; a lower layer may name which local model
            for _where, values in layers[model_rank + 1 :]:
                lower = values.get("model")
                if isinstance(lower, str) and lower.strip().startswith("local/"):
                    merged["model"] = lower.strip()
                    break
        for key in _PAIRED_WITH_MODEL:
            if key in merged and rank[key] > model_rank:
                # the model that was in force where this value was written: the value belongs to it
                written_for = next((v["model"] for _w, v in layers[rank[key] :] if "model" in v), None)
                if written_for is not None and str(written_for).strip() != merged["model"]:
                    del merged[key], origins[key]
        _last_origins.value = origins
        return merged


_last_origins = threading.local()


def load_settings(**overrides: Any) -> Settings:
    """Build :class:`Settings` from overrides (flags) > environment > config file > defaults.

    Every unknown key and bad value is one :class:`ConfigError` line naming the
    setting, where its value came from, and how to fix it.
    """
    unknown = sorted(set(overrides) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}: valid ones are {', '.join(Settings.model_fields)}")
    _last_origins.value = {}
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err.get("loc") else "?"
        origins: dict[str, str] = getattr(_last_origins, "value", {}) or {}
        source = origins.get(field, DEFAULTS)
        if source == ENVIRONMENT:
            source = f"environment variable {_env_name(field)}"
        given = err.get("input", "<default>")
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        raise ConfigError(
            f"bad value for setting '{field}' from {source}: {given!r} ({msg}): {_fix_for(field, source)}"
        ) from None


def _env_name(field: str) -> str:
    """The variable that set ``field``: its alias when only that one is set."""
    alias = ENV_ALIASES.get(field)
    if alias and os.environ.get(alias, "").strip() and not os.environ.get(f"{ENV_PREFIX}{field.upper()}", "").strip():
        return alias
    return f"{ENV_PREFIX}{field.upper()}"


def _fix_for(field: str, source: str) -> str:
    if source.startswith("environment variable"):
        return f"fix or unset {source.removeprefix('environment variable ')}"
    if source.startswith(FILE):
        return f"fix '{field}' in that file"
    if source == FLAGS:
        return "fix the flag's value"
    return "report this as a bug"


def cache_dir() -> Path:
    """The ``cache_dir`` setting (``AGENTMEM_CACHE_DIR``, config file, else the user cache dir).

    The one answer to "where do downloads, models and caches go": every module
    that keeps files there asks here.
    """
    return load_settings().cache_dir


def recall_budget(given: int | None = None) -> int:
    """``given`` when not ``None``, else the ``recall_budget`` setting (default :data:`DEFAULT_RECALL_BUDGET`)."""
    return int(given) if given is not None else load_settings().recall_budget
