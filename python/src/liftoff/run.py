"""A launched run: its state, its end, its output, and stopping it.

Example::

    run = liftoff.launch(queue="cpu", path="examples/hello", entrypoint="python3 main.py")
    for line in run.logs(follow=True):
        print(f"[{line.stream}] {line.text}")
    result = run.wait(timeout=60)
    print(result.state, result.exit_code)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, Optional

from .errors import RunTimeout
from .models import TERMINAL_STATES, ItemView, LogChunk

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client


@dataclass
class LogLine:
    """One line of a run's output, without its newline; ``stream`` is
    ``stdout``, ``stderr``, ``agent`` (the agent's own messages about the
    run) or ``build`` (its image build). ``seq`` is the log chunk that
    completed the line. A last line without a newline comes out at the end.

    Example: ``LogLine(stream="stdout", text="count 1", seq=3)``.
    """

    stream: str
    text: str
    seq: int

    def __str__(self) -> str:
        return self.text


@dataclass
class RunResult:
    """How a run ended: ``state`` (finished, failed, stopped or preempted),
    its ``exit_code`` (when the process exited), ``reason``, the ``stage``
    at which it failed, and the whole ``item``.

    Example::

        result = run.wait()
        assert result.ok, result.reason
    """

    state: str
    exit_code: Optional[int]
    reason: Optional[str]
    stage: Optional[str]
    item: ItemView

    @property
    def ok(self) -> bool:
        """Finished with exit code 0."""
        return self.state == "finished" and (self.exit_code in (0, None))


class _Lines:
    """Splits chunks into lines, per stream."""

    def __init__(self) -> None:
        self._partial: Dict[str, str] = {}
        self._seq: Dict[str, int] = {}

    def push(self, chunk: LogChunk) -> Iterator[LogLine]:
        text = self._partial.pop(chunk.stream, "") + chunk.data
        *lines, rest = text.split("\n")
        for line in lines:
            yield LogLine(stream=chunk.stream, text=line, seq=chunk.seq)
        if rest:
            self._partial[chunk.stream] = rest
            self._seq[chunk.stream] = chunk.seq

    def flush(self) -> Iterator[LogLine]:
        for stream, rest in list(self._partial.items()):
            yield LogLine(stream=stream, text=rest, seq=self._seq.get(stream, 0))
        self._partial.clear()


class Run:
    """A run-queue item and the run it becomes.

    ``id`` is the run id (8 characters, shown everywhere), ``item_id`` the
    item's id; both address it in the API. ``state`` is the state last seen
    (``pending`` right after the launch); :meth:`refresh` asks the server.

    Example::

        run = client.launch(queue="cpu", job="hello")
        run.refresh()
        print(run.id, run.state)
        run.stop()
    """

    def __init__(
        self,
        client: "Client",
        *,
        item_id: str,
        run_id: str,
        queue: Optional[str] = None,
        item: Optional[ItemView] = None,
    ) -> None:
        self.client = client
        self.item_id = item_id
        self.id = run_id
        self.queue = queue
        self.item: Optional[ItemView] = item
        self.state: str = item.state if item is not None else "pending"

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, item_id={self.item_id!r}, queue={self.queue!r}, state={self.state!r})"

    def _seen(self, item: ItemView) -> ItemView:
        self.item = item
        self.state = item.state
        return item

    def refresh(self) -> ItemView:
        """Reads the item again; updates :attr:`state` and :attr:`item`.

        Example: ``run.refresh().agent_id``.
        """
        return self._seen(self.client.get_item(self.item_id))

    @property
    def done(self) -> bool:
        """Whether the state last seen is terminal. Example: ``while not run.done: run.refresh()``."""
        return self.state in TERMINAL_STATES

    def wait(self, timeout: Optional[float] = None, *, poll_interval: float = 0.5) -> RunResult:
        """Waits until the run ends and returns how (:class:`RunResult`);
        raises :class:`~liftoff.RunTimeout` (a :class:`TimeoutError`) when
        ``timeout`` seconds pass first.

        Example::

            result = run.wait(timeout=600)
            print(result.state, result.exit_code)
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = min(0.1, poll_interval)
        while True:
            item = self.refresh()
            if item.is_terminal:
                return RunResult(
                    state=item.state, exit_code=item.exit_code, reason=item.reason, stage=item.stage, item=item
                )
            if deadline is not None and time.monotonic() >= deadline:
                raise RunTimeout(
                    f"run '{self.id}' is still {item.state} after {timeout} s", code="timeout", field=None
                )
            sleep = pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic()))
            time.sleep(sleep)
            pause = min(pause * 2, poll_interval)

    def logs(self, follow: bool = True, *, reconnect_timeout: float = 60.0) -> Iterator[LogLine]:
        """The run's output, line by line.

        ``follow=True`` reads the run's event stream from its start and ends
        when the run ends; a dropped connection (even a server restart) is
        resumed from the last event (``Last-Event-ID``), so no line is lost
        and none repeated. ``follow=False`` reads what is stored now, page
        by page, and ends there.

        Example::

            for line in run.logs():
                print(line.stream, line.text)
        """
        lines = _Lines()
        if follow:
            for event in self.client.events(self.item_id, reconnect_timeout=reconnect_timeout):
                if event.chunk is not None:
                    yield from lines.push(event.chunk)
                elif event.transition is not None:
                    self.state = event.transition.to
                elif event.state is not None:
                    self.state = event.state
        else:
            yield from self._stored_lines(lines)
        yield from lines.flush()

    def _stored_lines(self, lines: _Lines) -> Iterable[LogLine]:
        after = 0
        while True:
            page = self.client.read_logs(self.item_id, after=after)
            for chunk in page.chunks:
                yield from lines.push(chunk)
            if not page.chunks or page.complete:
                return
            after = page.next_seq

    def stop(self) -> ItemView:
        """Asks the run to stop: a pending one stops at once, a running one
        becomes ``stopping`` until its agent has stopped it (``wait()`` then
        gives ``stopped``). :class:`~liftoff.Conflict` once it has ended.

        Example::

            run.stop()
            assert run.wait(timeout=60).state == "stopped"
        """
        return self._seen(self.client.stop_item(self.item_id))
