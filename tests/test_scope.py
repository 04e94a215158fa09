"""Scope isolation: one scope never sees another's items."""

from __future__ import annotations

from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Event, Query, Scope
from agentmem_episodic import EpisodicMemory


def _memory(stores, embedder, user, run=None):
    toolkit = Toolkit(scope=Scope(user_id=user, run_id=run), stores=stores, embedder=embedder, namespace="episodic")
    return EpisodicMemory(toolkit)


def test_episodic_scopes_are_isolated(tmp_path, embedder):
    stores = Stores(tmp_path)
    alice = _memory(stores, embedder, "alice")
    bob = _memory(stores, embedder, "bob")
    alice.observe(Event.message("My locker code is 4417.", speaker="alice", session_id="s1"))
    bob.observe(Event.message("I prefer window seats on trains.", speaker="bob", session_id="s1"))
    got_alice = alice.recall(Query(text="What is the locker code?"))
    got_bob = bob.recall(Query(text="What is the locker code?"))
    assert "4417" in got_alice.text()
    assert "4417" not in got_bob.text()
    assert all("window" not in i.content for i in got_alice.items)
    # same user, another run: also isolated
    other_run = _memory(stores, embedder, "alice", run="r2")
    assert other_run.recall(Query(text="locker code")).items == []
    for m in (alice, bob, other_run):
        m.close()


def test_scoped_sqlite_databases_are_separate_files(tmp_path):
    stores = Stores(tmp_path)
    a = Toolkit(scope=Scope(user_id="a"), stores=stores, namespace="x")
    b = Toolkit(scope=Scope(user_id="b"), stores=stores, namespace="x")
    a.db.execute("CREATE TABLE t (v TEXT)")
    a.db.execute("INSERT INTO t VALUES ('secret')")
    a.db.commit()
    tables = b.db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    assert tables == []
    a.close()
    b.close()


def test_memory_persists_across_reopen(tmp_path, embedder):
    stores = Stores(tmp_path)
    first = _memory(stores, embedder, "carol")
    first.observe(Event.message("The spare key is under the blue flowerpot.", speaker="carol", session_id="s1"))
    first.close()
    reopened = _memory(Stores(tmp_path), embedder, "carol")
    assert "flowerpot" in reopened.recall(Query(text="where is the spare key")).text()
    reopened.close()


def test_chroma_server_by_configuration(tmp_path, embedder):
    """The same memory against a real Chroma server (`chroma run`) instead of the embedded client."""
    import shutil
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx
    import pytest

    chroma = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    if not Path(chroma).exists():
        pytest.skip("the chroma CLI is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [chroma, "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "chroma server did not start"
            time.sleep(0.3)
        stores = Stores(tmp_path / "local", chroma_host=f"127.0.0.1:{port}")
        dana = _memory(stores, embedder, "dana")
        erin = _memory(stores, embedder, "erin")
        dana.observe(Event.message("My bike lock code is 2291.", speaker="dana", session_id="s1"))
        assert "2291" in dana.recall(Query(text="bike lock code")).text()
        assert erin.recall(Query(text="bike lock code")).items == []
        assert not (tmp_path / "local" / "chroma").exists()  # nothing went to the embedded store
        dana.close()
        erin.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
