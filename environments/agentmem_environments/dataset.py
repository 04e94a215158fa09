"""What the dataset-backed benchmark environments share: constructor, knobs and where the data comes from.

LongMemEval and MemoryAgentBench (and any environment built the same way)
take the same constructor arguments (``data``, ``seed``, ``top_k``,
``judge_model`` and knobs), and find their data in the same order:

1. a path: ``--data`` naming a file (or a directory, where the environment
   reads one), the ``path`` knob, or the environment's setting
   (``<name>_data``: ``AGENTMEM_<NAME>_DATA`` or ``agentmem.toml``, see
   :mod:`agentmem.config`);
2. the official files, downloaded once into the cache and checked (unless
   the ``download`` knob is off);
3. a fixture in the benchmark's format that agentmem generated; it is NOT the
   benchmark, and a warning says so.

:class:`DatasetEnvironment` implements that once; a subclass says how to read
a path (:meth:`~DatasetEnvironment._read`), how to fetch the official data
(:meth:`~DatasetEnvironment._download`) and how to split tasks
(:meth:`~DatasetEnvironment._split`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from agentmem.config import load_settings
from agentmem.environment import Task, TaskSetEnvironment, check_top_k, parse_knobs

__all__ = ["DatasetEnvironment", "DatasetOptions"]

log = logging.getLogger(__name__)


class DatasetOptions(BaseModel):
    """The knobs every dataset environment has; a subclass's ``Options`` adds its own (and may redescribe these)."""

    path: str | None = Field(None, description="the data's path (default: the environment's setting)")
    download: bool = Field(True, description="download the official data when no path is given")
    judge_model: str | None = Field(None, description="a strong litellm model that judges answers")


class DatasetEnvironment(TaskSetEnvironment):
    """A task-set environment over one benchmark dataset: a path, else the official files, else a fixture.

    Subclasses set the class attributes below and implement :meth:`_read`,
    :meth:`_download` and :meth:`_split`. Their ``Options`` model must have
    the knobs ``path``, ``download`` and ``judge_model``: it subclasses
    :class:`DatasetOptions` (and a subclass annotates ``options`` with it, so
    that its own knobs are typed).
    """

    #: the knobs (a :class:`DatasetOptions` subclass)
    Options: ClassVar[type[DatasetOptions]]
    #: the parsed knobs
    options: DatasetOptions
    #: the :class:`~agentmem.config.Settings` field that names the data (e.g. ``"longmemeval_data"``)
    data_setting: ClassVar[str]
    #: its environment variable, for messages (e.g. ``"AGENTMEM_LONGMEMEVAL_DATA"``)
    data_variable: ClassVar[str]
    #: endings of a ``--data`` value that is a data path rather than knobs
    data_suffixes: ClassVar[tuple[str, ...]] = (".json",)
    #: whether a directory given as ``--data`` is a data path (parquet folders)
    data_dirs: ClassVar[bool] = False
    #: the fixture and what the warning calls it
    fixture_path: ClassVar[Path]
    fixture_notice: ClassVar[str]
    #: the benchmark's name and what ``--data`` should point at, for the fixture warning
    benchmark: ClassVar[str]
    data_hint: ClassVar[str]
    #: the primary metric once a judge model is given (``None``: it stays ``primary_metric``)
    judged_metric: ClassVar[str | None] = None

    def __init__(
        self,
        data: str | Path | None = None,
        *,
        seed: int = 0,
        top_k: int | None = None,
        judge_model: str | None = None,
        **knobs: Any,
    ) -> None:
        self.top_k = check_top_k(self.name, top_k)
        text = str(data).strip() if data not in (None, "") else ""
        if text and self._names_data(text):
            data, knobs = None, {"path": text, **knobs}  # --data may be just the data's path
        if judge_model:
            knobs["judge_model"] = judge_model
        self.options = parse_knobs(self.name, self.Options, data, knobs)
        self.seed = int(seed)
        self._tasks: list[Task] | None = None
        self._splits: dict[str, list[str]] = {}
        self._source = ""
        self.judge: Any = None
        if self.options.judge_model:
            from agentmem_environments.judge import Judge

            self.judge = Judge(self.options.judge_model, env=self.name)
            if self.judged_metric is not None:
                self.primary_metric = self.judged_metric  # type: ignore[misc]

    @classmethod
    def _names_data(cls, text: str) -> bool:
        """Whether a ``--data`` value is the data's path (an existing file, a known ending) rather than knobs."""
        path = Path(text).expanduser()
        if path.is_file():
            return True
        if "=" in text:
            return False
        return (cls.data_dirs and path.exists()) or text.endswith(cls.data_suffixes)

    # ------------------------------------------------------------------ what a subclass provides

    def _read(self, path: Path) -> list[Task]:
        """Every task in the data at ``path`` (a one-line :class:`~agentmem.errors.DataError` if it is bad)."""
        raise NotImplementedError

    def _download(self) -> tuple[list[Task], Path] | None:
        """The official data's tasks and where they lie, fetched once into the cache; ``None`` if unavailable."""
        raise NotImplementedError

    def _split(self, tasks: list[Task]) -> dict[str, list[str]]:
        """Train / validation / test task ids, fixed by ``self.seed``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ data

    def data_path(self) -> Path | None:
        """The path the user gave: the ``path`` knob (``--data``), else the environment's setting."""
        explicit = self.options.path or getattr(load_settings(), self.data_setting)
        return Path(explicit).expanduser() if explicit not in (None, "") else None

    def _load(self) -> list[Task]:
        if self._tasks is not None:
            return self._tasks
        path = self.data_path()
        if path is not None:
            tasks, source = self._read(path), str(path)
        else:
            got = self._download() if self.options.download else None
            if got is not None:
                tasks, source = got[0], f"downloaded ({got[1]})"
            else:
                tasks, source = self._read(self.fixture_path), f"fixture: {self.fixture_notice}"
                log.warning(
                    "%s: %d tasks written by agentmem's generator; scores say nothing about %s. "
                    "Set %s or pass --data to %s to run the benchmark.",
                    self.fixture_notice,
                    len(tasks),
                    self.benchmark,
                    self.data_variable,
                    self.data_hint,
                )
        self._splits = self._split(tasks)
        self._tasks, self._source = tasks, source
        return tasks

    @property
    def source(self) -> str:
        """Where the data came from: a path, ``"downloaded (<path>)"`` or ``"fixture: ..."``."""
        self._load()
        return self._source
