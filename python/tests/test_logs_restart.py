"""Following a run's log across a server restart: every line once, in order."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

import liftoff

from conftest import Proc, Server, start_agent, stop_everything, write_job

LINES = 60


@pytest.fixture
def own_server(liftoff_bin: str, tmp_path: Path) -> Iterator[Server]:
    """A server of its own (this test restarts it), with a queue and an agent."""
    server = Server(liftoff_bin, tmp_path)
    procs: List[Proc] = []
    try:
        server.start()
        server.client().create_queue("restart", "local-process")
        procs.append(start_agent(liftoff_bin, server, "restart", tmp_path, max_jobs=1))
        yield server
    finally:
        stop_everything(server, procs)


def test_follow_survives_a_server_restart(own_server: Server, tmp_path: Path) -> None:
    job = write_job(
        tmp_path / "numbers",
        f"""
        import time
        for i in range({LINES}):
            print(f"line {{i}}", flush=True)
            time.sleep(0.15)
        """,
    )
    client = own_server.client()
    run = client.launch("restart", path=job, entrypoint="python3 main.py")
    first_pid = own_server.proc.pid if own_server.proc else None

    restarted = threading.Event()
    failure: List[BaseException] = []
    lines_at_restart: Optional[int] = None

    def restart() -> None:
        try:
            own_server.restart()  # SIGTERM, then the same port and data dir
            restarted.set()
        except BaseException as e:  # reported by the main thread
            failure.append(e)

    restarter = threading.Thread(target=restart)
    got: List[str] = []
    for line in run.logs(follow=True):
        if line.stream != "stdout":
            continue
        got.append(line.text)
        if len(got) == 5:
            restarter.start()
        if restarted.is_set() and lines_at_restart is None:
            lines_at_restart = len(got)
    restarter.join(60)
    assert not failure, failure
    assert restarted.is_set(), "the server was not restarted"
    assert own_server.proc is not None and own_server.proc.pid != first_pid
    # the restart happened while the run was still printing
    assert lines_at_restart is not None and lines_at_restart < LINES, lines_at_restart
    assert got == [f"line {i}" for i in range(LINES)], "lines lost, repeated or out of order"
    # the iterator ended because the run ended
    assert run.state == "finished"
    assert client.get_item(run.item_id).exit_code == 0
