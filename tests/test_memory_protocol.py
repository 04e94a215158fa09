"""The memory-program protocol: close() closes what the base opened, params are typed, capabilities are declared."""

from __future__ import annotations

import gc
from typing import Any

from pydantic import BaseModel, Field

from agentmem.memory import Forgets, MemoryProgram
from agentmem.store import StoredItem
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Event, Query, Recall, Scope


class NotesParams(BaseModel):
    top_k: int = Field(3, ge=1, le=10)


class CarelessNotes(MemoryProgram[NotesParams]):
    """Writes without committing and overrides close() without calling super(): the base must still save."""

    name = "careless"

    def __init__(self, toolkit: Any, params: Any = None) -> None:
        super().__init__(toolkit, params)
        self.toolkit.db.execute("CREATE TABLE IF NOT EXISTS notes (text TEXT)")
        self.store = self.open_store("log", dense=False, lexical=False, sync_every=1000)
        self.closed_own = False

    def observe(self, event: Event) -> None:
        self.toolkit.db.execute("INSERT INTO notes (text) VALUES (?)", (event.content,))  # never committed here
        self.store.add([StoredItem(text=event.content)])  # held back until 1000 writes

    def recall(self, query: Query) -> Recall:
        rows = self.toolkit.db.execute("SELECT text FROM notes").fetchall()
        return Recall(plugin=self.name, omitted=len(rows) + self.store.count())

    def close(self) -> None:  # forgets super().close()
        self.closed_own = True


def _toolkit(tmp_path) -> Toolkit:
    return Toolkit(scope=Scope(user_id="u"), stores=Stores(tmp_path), namespace="careless")


def _saved(tmp_path) -> int:
    again = CarelessNotes(_toolkit(tmp_path))
    n = again.recall(Query(text="")).omitted
    again.close()
    return n


def test_a_plugin_that_forgets_super_close_loses_no_write(tmp_path):
    memory = CarelessNotes(_toolkit(tmp_path))
    memory.observe(Event.message("first note"))
    memory.observe(Event.message("second note"))
    memory.close()
    assert memory.closed_own  # its own close ran, and the base's after it
    assert _saved(tmp_path) == 4  # two rows in its table, two in its store


def test_a_plugin_dropped_without_close_loses_no_write(tmp_path):
    memory = CarelessNotes(_toolkit(tmp_path / "dropped"))
    memory.observe(Event.message("a note nobody closed"))
    del memory
    gc.collect()
    assert _saved(tmp_path / "dropped") == 2


def test_params_come_from_the_generic_argument_and_are_typed(tmp_path):
    assert CarelessNotes.Params is NotesParams
    memory = CarelessNotes(_toolkit(tmp_path), {"top_k": 5})
    top_k: int = memory.params.top_k  # a type checker sees NotesParams here
    assert top_k == 5
    memory.close()


def test_forgetting_is_a_declared_capability(tmp_path):
    class Forgetful(MemoryProgram, Forgets):
        name = "forgetful"

        def __init__(self) -> None:
            super().__init__(None)  # type: ignore[arg-type]
            self.items = {"a": "x"}

        def recall(self, query: Query) -> Recall:
            return Recall()

        def forget(self, item_id: str) -> bool:
            return self.items.pop(item_id, None) is not None

    memory = Forgetful()
    assert isinstance(memory, Forgets) and not issubclass(CarelessNotes, Forgets)
    assert memory.forget("a") is True and memory.forget("a") is False
