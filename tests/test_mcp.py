"""`agentmem mcp`: a real server process driven by the `mcp` client library, over stdio and streamable HTTP.

What a user of an MCP client would notice: memories round-trip (add, search,
list, delete), users never see each other's memories, "delete all" deletes
one user's memories only, a restart (even after kill -9) keeps every
acknowledged memory, a deleted memory never comes back (not in search, not
after a restart, not on disk), and a bad argument is one error line while
the server keeps serving. Plus the service itself, without a transport: crash
recovery, configuration changes, concurrency.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agentmem.mcp_server import MemoryService, ServiceError

AGENTMEM = str(Path(sys.executable).with_name("agentmem"))
pytestmark = pytest.mark.timeout(300)


# -- helpers -----------------------------------------------------------------------------------------
def _env(tmp: Path) -> dict[str, str]:
    # the client would otherwise pass only a minimal environment; keep the model/cache settings
    return {**os.environ, "AGENTMEM_HOME": str(tmp / "home")}


def _stdio(store: Path, *extra: str) -> Any:
    from mcp import StdioServerParameters

    return StdioServerParameters(
        command=AGENTMEM,
        args=["mcp", "--memory", "episodic", "--store-dir", str(store), "--user", "ann", *extra],
        env=_env(store.parent),
    )


async def _call(client: Any, tool: str, **args: Any) -> Any:
    result = await client.call_tool(tool, args)
    assert not result.is_error, f"{tool} failed: {result.content[0].text}"
    return result.structured_content


async def _error(client: Any, tool: str, **args: Any) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, f"{tool}({args}) should have failed"
    text = result.content[0].text
    assert "\n" not in text and "Traceback" not in text, text
    return text


def _texts(found: dict[str, Any]) -> str:
    return "\n".join(h["content"] for h in found["hits"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_http(store: Path, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            AGENTMEM,
            "mcp",
            "--transport",
            "http",
            "--port",
            str(port),
            "--memory",
            "episodic",
            "--store-dir",
            str(store),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(store.parent),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("HTTP server did not start within 120 s")


def _files_containing(root: Path, needle: str) -> list[Path]:
    data = needle.encode()
    return [p for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]


# -- over stdio ----------------------------------------------------------------------------------------
def test_stdio_round_trip_isolation_delete_and_restart(tmp_path: Path) -> None:
    from mcp import Client

    store = tmp_path / "store"
    secret = "Ann's locker code is 4417-zebra"

    async def first() -> dict[str, str]:
        async with Client(_stdio(store)) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"add_memory", "search_memories", "list_memories", "delete_memory", "delete_all_memories"} <= names
            assert "fact_history" not in names  # episodic keeps no fact versions
            seat = await _call(client, "add_memory", text="Ann prefers aisle seats on long flights")
            code = await _call(client, "add_memory", text=secret, metadata={"kind": "secret"})
            assert code["metadata"] == {"kind": "secret"} and code["user_id"] == "ann"
            await _call(client, "add_memory", text="Bob is allergic to peanuts", user_id="bob")
            await _call(client, "add_memory", text="Bob's locker code is 9902-otter", user_id="bob")

            found = await _call(client, "search_memories", query="which seat does Ann like on flights")
            assert "aisle" in _texts(found) and "peanut" not in _texts(found)
            assert seat["id"] in {i for h in found["hits"] for i in h["memory_ids"]}
            bob = await _call(client, "search_memories", query="locker code", user_id="bob")
            assert "9902" in _texts(bob) and "4417" not in _texts(bob)  # nothing crosses users
            top1 = await _call(client, "search_memories", query="locker code", top_k=1)
            assert len(top1["hits"]) == 1

            listed = await _call(client, "list_memories")
            assert listed["total"] == 2 and {m["id"] for m in listed["memories"]} == {seat["id"], code["id"]}

            # bad arguments: one line each, and the server keeps serving
            assert "top_k" in await _error(client, "search_memories", query="x", top_k="many")
            assert "text is empty" in await _error(client, "add_memory", text="   ")
            assert "no memory with id" in await _error(client, "delete_memory", memory_id="nope")
            assert "no memory with id" in await _error(client, "delete_memory", memory_id=seat["id"], user_id="bob")
            assert "user_id" in await _error(client, "delete_all_memories")
            assert "metadata" in await _error(client, "add_memory", text="x", metadata="not an object")

            deleted = await _call(client, "delete_memory", memory_id=code["id"])
            assert deleted["deleted"] == 1
            again = await _call(client, "search_memories", query="locker code 4417 zebra")
            assert "4417" not in _texts(again)

            wiped = await _call(client, "delete_all_memories", user_id="bob")
            assert wiped["deleted"] == 2 and wiped["user_id"] == "bob"
            assert (await _call(client, "list_memories", user_id="bob"))["total"] == 0
            assert (await _call(client, "list_memories"))["total"] == 1  # Ann's memory is untouched
            return {"seat": seat["id"], "code": code["id"]}

    ids = asyncio.run(first())

    async def second() -> None:  # a new server process on the same store
        async with Client(_stdio(store)) as client:
            found = await _call(client, "search_memories", query="aisle seat flights")
            assert ids["seat"] in {i for h in found["hits"] for i in h["memory_ids"]}
            gone = await _call(client, "search_memories", query="locker code 4417 zebra")
            assert "4417" not in _texts(gone)
            assert (await _call(client, "search_memories", query="peanut allergy", user_id="bob"))["hits"] == []

    asyncio.run(second())
    assert _files_containing(store, "4417-zebra") == []  # deleted means deleted, on disk too
    assert _files_containing(store, "9902-otter") == []


def test_second_server_on_the_same_store_is_refused_in_one_line(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with MemoryService("episodic", store):
        proc = subprocess.run(
            [AGENTMEM, "mcp", "--store-dir", str(store)],
            capture_output=True,
            text=True,
            env=_env(tmp_path),
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
    assert proc.returncode == 2
    assert "already served by another agentmem mcp" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_documents_both_transports() -> None:
    proc = subprocess.run(
        [AGENTMEM, "mcp", "--help"], capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "120"}
    )
    assert proc.returncode == 0
    text = proc.stdout
    assert "stdio" in text and "http" in text and "127.0.0.1" in text and "--transport" in text


# -- over streamable HTTP --------------------------------------------------------------------------------
def test_http_concurrent_clients_crash_and_restart(tmp_path: Path) -> None:
    from mcp import Client

    store, port = tmp_path / "store", _free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    proc = _start_http(store, port)
    try:

        async def clients() -> dict[str, list[str]]:
            async def one(user: str) -> list[str]:
                ids = []
                async with Client(url) as client:
                    for i in range(3):
                        got = await _call(
                            client, "add_memory", text=f"{user} note {i}: {user} likes colour number {i}", user_id=user
                        )
                        ids.append(got["id"])
                return ids

            got = await asyncio.gather(*(one(u) for u in ("carol", "dave", "erin")))
            return dict(zip(("carol", "dave", "erin"), got))

        ids = asyncio.run(clients())

        async def check() -> None:
            async with Client(url) as client:
                for user in ids:
                    listed = await _call(client, "list_memories", user_id=user)
                    assert listed["total"] == 3
                    assert all(m["text"].startswith(user) for m in listed["memories"])
                    found = await _call(client, "search_memories", query="likes colour number", user_id=user)
                    assert found["hits"] and all(user in h["content"] for h in found["hits"])
                await _call(client, "delete_memory", memory_id=ids["carol"][0], user_id="carol")
                await _call(client, "delete_all_memories", user_id="dave")
                await _call(client, "add_memory", text="erin's last note before the crash", user_id="erin")

        asyncio.run(check())
        proc.send_signal(signal.SIGKILL)  # a crash: no shutdown, no flush
        proc.wait(timeout=30)
        proc = _start_http(store, port)

        async def after() -> None:
            async with Client(url) as client:
                erin = await _call(client, "search_memories", query="last note before the crash", user_id="erin")
                assert "before the crash" in _texts(erin)
                carol = await _call(client, "list_memories", user_id="carol")
                assert carol["total"] == 2 and ids["carol"][0] not in {m["id"] for m in carol["memories"]}
                found = await _call(client, "search_memories", query="carol note 0 colour number 0", user_id="carol")
                assert ids["carol"][0] not in {i for h in found["hits"] for i in h["memory_ids"]}
                assert (await _call(client, "list_memories", user_id="dave"))["total"] == 0

        asyncio.run(after())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- the service, without a transport ---------------------------------------------------------------------------
def test_service_recovers_an_unapplied_write_exactly_once(tmp_path: Path) -> None:
    """A crash between the ledger commit and the memory's write: the next call rebuilds, nothing lost or doubled."""
    store = tmp_path / "store"
    with MemoryService("episodic", store) as service:
        kept = service.add("Ann's dentist is Dr. Okafor", user_id="ann")
    import sqlite3

    with sqlite3.connect(store / "ledger.sqlite") as db:  # what a crash mid-add leaves behind
        db.execute(
            "INSERT INTO memories (id, user_id, agent_id, text, metadata, created_at, applied)"
            " VALUES ('crash0000000001', 'ann', 'default', 'Ann parks on level 3', '{}', ?, 0)",
            (kept.created_at,),
        )
    with MemoryService("episodic", store) as service:
        found = service.search("where does Ann park", user_id="ann")
        assert "level 3" in "\n".join(h.content for h in found.hits)
        dentist = service.search("dentist Okafor", user_id="ann")
        texts = [h.content for h in dentist.hits if "Okafor" in h.content]
        assert len(texts) == 1  # replayed once, not doubled


def test_service_rebuilds_when_the_configuration_changes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with MemoryService("episodic", store) as service:
        service.add("the wifi password is lantern42", user_id="ann")
    with MemoryService("episodic", store, params={"episodic": {"top_k": 2}}) as service:
        found = service.search("wifi password", user_id="ann")
        assert "lantern42" in found.hits[0].content


def test_service_rejects_bad_input_in_one_line(tmp_path: Path) -> None:
    with MemoryService("episodic", tmp_path / "store") as service:
        for call in (
            lambda: service.add("", user_id="ann"),
            lambda: service.add("x", user_id=""),
            lambda: service.add("x", user_id="ann", metadata={"memory_id": "1"}),
            lambda: service.add("x" * 20_001, user_id="ann"),
            lambda: service.search("x", user_id="ann", top_k=0),
            lambda: service.search("x", user_id="ann", budget_tokens=0),
            lambda: service.list_memories(user_id="ann", limit=0),
            lambda: service.fact_history("f1", user_id="ann"),
        ):
            with pytest.raises(ServiceError) as err:
                call()
            assert "\n" not in str(err.value)
    with pytest.raises(Exception, match="no memory plugin named"):
        MemoryService("episodix", tmp_path / "other")


def test_service_threads_on_one_user_lose_nothing(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with MemoryService("episodic", tmp_path / "store") as service:

        def writer(n: int) -> None:
            try:
                for i in range(3):
                    service.add(f"thread {n} fact {i}", user_id="ann")
                    service.search(f"fact {i}", user_id="ann")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert service.list_memories(user_id="ann").total == 9
        victim = service.list_memories(user_id="ann", limit=1).memories[0]
        service.delete(victim.id, user_id="ann")
        assert service.list_memories(user_id="ann").total == 8
        hits = service.search(victim.text, user_id="ann", budget_tokens=4000)
        assert victim.id not in {i for h in hits.hits for i in h.memory_ids}


@pytest.mark.llm
@pytest.mark.timeout(900)
def test_semantic_memory_over_the_service_keeps_fact_history_and_forgets_for_real(
    tmp_path: Path, local_llm: Any
) -> None:
    """With semantic memory, facts are extracted by the real local model; deleting the memory removes its facts."""
    store = tmp_path / "store"
    with MemoryService("semantic", store, llm=local_llm) as service:
        assert service.capabilities == {"history": ["semantic"]}
        first = service.add("I live in Denver and work as a nurse.", user_id="ann")
        found = service.search("where does the user live", user_id="ann")
        facts = [h for h in found.hits if h.metadata.get("fact_id")]
        assert facts, f"no fact was extracted: {found}"
        assert first.id in {i for h in facts for i in h.memory_ids}
        history = service.fact_history(facts[0].metadata["fact_id"], user_id="ann")
        assert history.changes and history.changes[0]["op"] == "ADD"
        json.dumps(history.model_dump())
        service.add("My cat is called Pixel and she is three years old.", user_id="ann")
        service.delete(first.id, user_id="ann")
        after = service.search("where does the user live and work", user_id="ann", budget_tokens=4000)
        assert "Denver" not in "\n".join(h.content for h in after.hits)
        assert first.id not in {i for h in after.hits for i in h.memory_ids}
        assert service.list_memories(user_id="ann").total == 1
    assert _files_containing(store, "Denver") == []
