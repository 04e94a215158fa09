"""Where evaluations run: a local process pool (the default) or a Ray cluster.

Both take :class:`~agentmem_evolve.evaluator.EvalJob`s and give back
:class:`~agentmem_evolve.evaluator.EvalOutcome`s, in any order, through
:meth:`Executor.map_unordered`; the controller records each outcome as soon
as it arrives, so an interrupted run loses at most the jobs in flight.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol

from agentmem_evolve.evaluator import EvalJob, EvalOutcome, run_job


class Executor(Protocol):
    name: str

    def map_unordered(self, jobs: list[EvalJob]) -> Iterator[EvalOutcome]: ...

    def close(self) -> None: ...


def _pool_worker_init() -> None:
    """Pool processes ignore Ctrl-C (the controller decides when to stop them) and end with the controller.

    A controller killed with ``kill -9`` cannot shut its pool down, and a pool
    process waits on its job queue forever: each would stay behind, holding
    its models in memory, run after run. So each watches its parent and
    exits when it is gone (its sandboxes follow: their channel closes, and the
    jail dies with its parent); what it was scoring was never recorded, and
    its scratch is swept by the next start.
    """
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch_parent() -> None:
        import time

        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch_parent, daemon=True, name="agentmem-pool-parent-watch").start()


class LocalExecutor:
    """A pool of ``concurrency`` spawned processes; each keeps its LLM client and embedder between jobs."""

    name = "local"

    def __init__(self, concurrency: int = 1) -> None:
        self.concurrency = max(1, concurrency)
        self._pool: ProcessPoolExecutor | None = None

    def _ensure(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.concurrency,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_pool_worker_init,
            )
        return self._pool

    def map_unordered(self, jobs: list[EvalJob]) -> Iterator[EvalOutcome]:
        pool = self._ensure()
        pending: set[Future[EvalOutcome]] = {pool.submit(run_job, job) for job in jobs}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class InlineExecutor:
    """Runs jobs in this process, one at a time (tests and debugging; the sandbox still isolates candidates)."""

    name = "inline"

    def __init__(self, llm: Any = None, embedder: Any = None) -> None:
        self.llm = llm
        self.embedder = embedder

    def map_unordered(self, jobs: list[EvalJob]) -> Iterator[EvalOutcome]:
        for job in jobs:
            yield run_job(job, llm=self.llm, embedder=self.embedder)

    def close(self) -> None:
        return None


class RayExecutor:
    """Jobs as Ray tasks: on a cluster with ``address``, or a local Ray instance started here when ``None``."""

    name = "ray"

    def __init__(self, address: str | None = None, concurrency: int = 1) -> None:
        if address is None:
            # a local instance shares this machine's environment: Ray must not repackage the project
            # and rebuild it with `uv run` for every worker (its hook does when the driver ran under uv)
            os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
        try:
            import ray
        except ImportError:
            from agentmem.errors import ConfigError

            raise ConfigError("--executor ray needs Ray: pip install 'agentmem-evolve[ray]'") from None
        self._ray = ray
        self._started_here = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=max(1, concurrency), include_dashboard=False, ignore_reinit_error=True, log_to_driver=False
                )
                self._started_here = True
        self._remote = ray.remote(max_retries=0)(run_job)

    def map_unordered(self, jobs: list[EvalJob]) -> Iterator[EvalOutcome]:
        ray = self._ray
        pending = [self._remote.remote(job) for job in jobs]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    yield ray.get(ref)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started_here:
            self._ray.shutdown()


def make_executor(kind: str, *, concurrency: int = 1, address: str | None = None) -> Executor:
    if kind == "ray":
        return RayExecutor(address=address, concurrency=concurrency)
    if kind == "inline":
        return InlineExecutor()
    return LocalExecutor(concurrency=concurrency)
