"""Reading ``text/event-stream`` (server-sent events) as the HTML standard
defines it: fields ``event``, ``data`` (joined with newlines) and ``id``;
lines starting with ``:`` are comments (the server's keep-alives); a blank
line dispatches the event. Lines end in ``\\n``, ``\\r\\n`` or ``\\r``, and
bytes may arrive split anywhere (even inside a UTF-8 sequence).

Example::

    p = SseParser()
    events = p.feed(b"event: log\\nid: 1.2\\ndata: {}\\n\\n")
    assert events[0].event == "log" and events[0].id == "1.2"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional


@dataclass
class SseEvent:
    """One dispatched event; ``event`` is ``message`` when the server named
    none, and ``id`` the last id the stream set (ids persist across events).

    Example: ``SseEvent(event="end", data='{"state":"finished"}', id="4.9")``.
    """

    event: str
    data: str
    id: Optional[str]


class SseParser:
    """Turns bytes, in whatever pieces they arrive, into :class:`SseEvent` s.

    Example::

        p = SseParser()
        assert p.feed(b"data: a") == []
        assert p.feed(b"\\n\\n")[0].data == "a"
    """

    def __init__(self) -> None:
        self._partial = bytearray()
        self._after_cr = False
        self._event: Optional[str] = None
        self._data: Optional[str] = None
        self._id: Optional[str] = None

    def feed(self, data: bytes) -> List[SseEvent]:
        """Feeds bytes; returns the events they complete."""
        out: List[SseEvent] = []
        for b in data:
            after_cr = self._after_cr
            self._after_cr = b == 0x0D
            if b == 0x0A and after_cr:
                continue
            if b in (0x0A, 0x0D):
                line = bytes(self._partial).decode("utf-8", "replace")
                self._partial.clear()
                event = self._line(line)
                if event is not None:
                    out.append(event)
            else:
                self._partial.append(b)
        return out

    def _line(self, line: str) -> Optional[SseEvent]:
        if not line:
            event, data = self._event, self._data
            self._event = self._data = None
            if data is None:
                return None
            return SseEvent(event=event or "message", data=data, id=self._id)
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data = value if self._data is None else self._data + "\n" + value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None
