"""The live view of a run: iteration, best so far, frontier, spend, and the latest events.

It listens to the controller's events (the same ones written to the
archive), so what it shows is what `agentmem evolve status` shows later.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table


class LiveDisplay:
    """A rich ``Live`` panel fed by :meth:`handle` (pass it as the controller's ``on_event``)."""

    def __init__(self, controller: Any, console: Console | None = None, *, history: int = 8) -> None:
        self.controller = controller
        self.console = console or Console()
        self.lines: deque[str] = deque(maxlen=history)
        self.iteration = int(controller.archive.get_state("iteration", 0))
        self.started = time.perf_counter()
        self._live: Live | None = None

    def __enter__(self) -> LiveDisplay:
        self._live = Live(self.render(), console=self.console, refresh_per_second=2, transient=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.__exit__(None, None, None)

    def handle(self, kind: str, payload: dict[str, Any]) -> None:
        line = _describe(kind, payload)
        if kind == "iteration_started":
            self.iteration = int(payload.get("iteration", self.iteration))
        if line:
            self.lines.append(line)
        if self._live is not None:
            self._live.update(self.render())
        elif line:
            self.console.print(line)

    def render(self) -> Panel:
        ctl = self.controller
        budget = ctl.config.budget
        spend = ctl.spend()
        head = Table.grid(padding=(0, 2))
        head.add_column(style="bold")
        head.add_column()
        head.add_row("iteration", f"{self.iteration} / {budget.iterations}")
        best = ctl._best_summary()
        head.add_row(
            "best",
            "-"
            if best is None
            else f"{best['id']}  {best['score']:.4f}  ({best['operator']}, generation {best['generation']})",
        )
        pool = ctl.archive.scored("select", ctl._keys["select"])
        frontier = getattr(ctl.strategy, "frontier", None)
        if frontier is not None and pool:
            front = frontier(pool)
            head.add_row("frontier", ", ".join(f"{s.program_id} {s.score:.3f}/{s.tokens:.0f} tok" for s in front[:4]))
        programs = ctl.archive.programs()
        valid = sum(1 for p in programs if p.status == "valid")
        head.add_row("programs", f"{len(programs)} ({valid} valid)")
        tokens = f"{int(spend['tokens'])}" + (f" / {budget.max_llm_tokens}" if budget.max_llm_tokens else "")
        head.add_row("spend", f"{int(spend['llm_calls'])} LLM calls, {tokens} tokens, {spend['seconds']:.0f} s")
        return Panel(
            Group(head, *self.lines), title=f"agentmem evolve - {ctl.config.environment.name}", border_style="cyan"
        )


def _describe(kind: str, p: dict[str, Any]) -> str:
    """One line of rich markup for an event; every value that came from a program or a model is escaped."""

    def text(value: Any, limit: int = 150) -> str:
        return escape(str(value if value is not None else "")[:limit])

    if kind == "iteration_started":
        return f"[bold]iteration {text(p['iteration'])}[/]: parents {text(', '.join(p.get('parents', [])))}"
    if kind == "program_added":
        why = p.get("rationale") or p.get("seed") or ""
        return f"  + {text(p['id'])} ({text(p['operator'])}) {text(why, 120)}"
    if kind == "validated" and not p.get("ok"):
        return f"  [red]x {text(p['id'])} invalid[/]: {text(p.get('error'))}"
    if kind == "proposal_failed":
        return f"  [yellow]! {text(p['operator'])} from {text(p['parent'])} failed[/]: {text(p.get('reason'))}"
    if kind == "proposal_repeated":
        return f"  [dim]= {text(p['operator'])} from {text(p['parent'])} repeated {text(p['id'])}: drawn again[/]"
    if kind == "evaluated":
        if p.get("status") != "ok":
            return f"  [red]{text(p['stage'])} {text(p['id'])} failed[/]: {text(p.get('reason'))}"
        return f"  {text(p['stage']):6} {text(p['id'])} -> {p['score']:.4f}"
    if kind == "screened":
        return f"  {'[green]promoted[/]' if p.get('promoted') else 'not promoted'} {text(p['id'])}"
    if kind == "judged":
        d = p.get("difference") or {}
        what = "[green]replaces[/]" if p.get("replaces") else "does not replace"
        against = "the best" if p.get("against") == "best" else "its parent"
        return (
            f"  {text(p['id'])} {what} {against} {text(p.get('incumbent'))} ({text(p.get('reason'))}): "
            f"{d.get('mean', 0):+.3f} [{d.get('low', 0):+.3f}, {d.get('high', 0):+.3f}] n={d.get('n', 0)}"
        )
    if kind == "budget_exhausted":
        return f"[yellow]stopping: {text(p.get('reason'))}[/]"
    if kind == "interrupted":
        return "[yellow]interrupted: resume with `agentmem evolve resume RUN`[/]"
    return ""
