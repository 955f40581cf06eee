"""Fixtures that run the real thing: `liftoff server` and `liftoff agent`
processes from the binary named by LIFTOFF_BIN.

Without LIFTOFF_BIN the end-to-end tests are skipped, except in CI (CI set
and not 0/false), where they fail: a CI run must not pass by testing nothing.
Every process is started in its own process group and killed at the end,
pass or fail.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

import liftoff

_ALL: List["Proc"] = []

# The servers these tests start are local: never reach them through a proxy.
for _name in ("no_proxy", "NO_PROXY"):
    os.environ[_name] = ",".join(x for x in ("127.0.0.1", "localhost", os.environ.get(_name, "")) if x)


def ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


class Proc:
    """A child process in its own process group, its output in a file."""

    def __init__(self, args: List[str], env: Dict[str, str], log: Path, cwd: Optional[Path] = None) -> None:
        self.args = args
        self.log = log
        self._out = open(log, "ab")
        self.popen = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _ALL.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the group, then SIGKILL after `timeout`; the group is
        killed anyway at the end (children of a process that exited)."""
        if self.alive():
            self._signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL)
        self.popen.wait()
        self._out.close()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _kill_all() -> None:
    for p in list(_ALL):
        try:
            p.stop(timeout=5)
        except Exception:
            pass
    _ALL.clear()


atexit.register(_kill_all)


class Server:
    """`liftoff server` on 127.0.0.1: first on a port the OS picks (read
    from its output), then, after `restart()`, on the same port and data dir."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root
        self.data_dir = root / "data"
        self.port: Optional[int] = None
        self.proc: Optional[Proc] = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        assert self.port is not None
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def start(self) -> None:
        self.starts += 1
        log = self.root / f"server-{self.starts}.log"
        listen = f"127.0.0.1:{self.port or 0}"
        env = _clean_env()
        self.proc = Proc(
            [self.binary, "server", "--listen", listen, "--data-dir", str(self.data_dir)], env, log, cwd=self.root
        )
        deadline = time.monotonic() + 60
        while self.port is None:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
            if m:
                self.port = int(m.group(1))
                break
            self._check_alive(deadline)
            time.sleep(0.05)
        while True:  # the health route, outside /api/v1
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            self._check_alive(deadline)
            time.sleep(0.05)

    def _check_alive(self, deadline: float) -> None:
        assert self.proc is not None
        if not self.proc.alive():
            raise RuntimeError(f"liftoff server exited early:\n{self.proc.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"liftoff server did not come up:\n{self.proc.tail()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, **kwargs: object) -> liftoff.Client:
        return liftoff.Client(base_url=self.base_url, api_key=self.api_key, **kwargs)  # type: ignore[arg-type]


def _clean_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFTOFF_")}
    env.setdefault("RUST_LOG", "warn")
    return env


def start_agent(binary: str, server: Server, queue: str, root: Path, max_jobs: int = 2) -> Proc:
    """`liftoff agent -q QUEUE` with its own TMPDIR (its lock file) and work dir;
    returns once the server lists it."""
    tmp = root / f"agent-{queue}-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = _clean_env()
    env.update(LIFTOFF_BASE_URL=server.base_url, LIFTOFF_API_KEY=server.api_key, TMPDIR=str(tmp))
    args = [binary, "agent", "-q", queue, "--work-dir", str(root / f"work-{queue}"), "-j", str(max_jobs)]
    args += ["--grace", "5"]
    proc = Proc(args, env, root / f"agent-{queue}.log", cwd=root)
    client = server.client()
    deadline = time.monotonic() + 60
    while not any(queue in a.queues and a.status != "stopped" for a in client.list_agents()):
        if not proc.alive():
            raise RuntimeError(f"liftoff agent exited early:\n{proc.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"liftoff agent did not register:\n{proc.tail()}")
        time.sleep(0.1)
    return proc


def stop_everything(server: Server, procs: List[Proc]) -> None:
    """Stops the runs still going (so no job outlives the test), then the processes."""
    try:
        if server.proc is not None and server.proc.alive():
            client = server.client()
            for item in client.list_items(limit=1000):
                if not item.is_terminal:
                    try:
                        client.stop_item(item.id)
                    except liftoff.LiftoffError:
                        pass
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and any(not i.is_terminal for i in client.list_items(limit=1000)):
                time.sleep(0.2)
    except liftoff.LiftoffError:
        pass
    finally:
        for p in procs:
            p.stop()
        server.stop()


@pytest.fixture(scope="session")
def liftoff_bin() -> str:
    path = os.environ.get("LIFTOFF_BIN", "").strip()
    if not path:
        if ci():
            pytest.fail("LIFTOFF_BIN is not set, but CI is: the end-to-end tests must run in CI", pytrace=False)
        pytest.skip("LIFTOFF_BIN is not set (the path of a built `liftoff` binary)")
    if not os.access(path, os.X_OK):
        pytest.fail(f"LIFTOFF_BIN={path} is not an executable file", pytrace=False)
    return path


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="liftoff-pytest-") as d:
        yield Path(d)


class Env:
    """A server, a local-process queue and an agent serving it."""

    def __init__(self, server: Server, queue: str, agent: Proc) -> None:
        self.server = server
        self.queue = queue
        self.agent = agent

    def client(self, **kwargs: object) -> liftoff.Client:
        return self.server.client(**kwargs)


@pytest.fixture(scope="session")
def env(liftoff_bin: str, tmp_root: Path) -> Iterator[Env]:
    root = tmp_root / "main"
    root.mkdir()
    server = Server(liftoff_bin, root)
    procs: List[Proc] = []
    try:
        server.start()
        server.client().create_queue("cpu", "local-process")
        procs.append(start_agent(liftoff_bin, server, "cpu", root))
        yield Env(server, "cpu", procs[0])
    finally:
        stop_everything(server, procs)


@pytest.fixture
def liftoff_env(env: Env, monkeypatch: pytest.MonkeyPatch) -> Env:
    """`env`, with LIFTOFF_BASE_URL and LIFTOFF_API_KEY set for `liftoff.launch` (no LIFTOFF_ENTITY:
    the entity comes from /whoami)."""
    monkeypatch.setenv("LIFTOFF_BASE_URL", env.server.base_url)
    monkeypatch.setenv("LIFTOFF_API_KEY", env.server.api_key)
    monkeypatch.delenv("LIFTOFF_ENTITY", raising=False)
    return env


def write_job(directory: Path, body: str) -> Path:
    """A code directory whose main.py is `body`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.py").write_text(textwrap.dedent(body).lstrip())
    return directory
