"""The event-stream parser, whatever pieces the bytes come in."""

from __future__ import annotations

from liftoff.sse import SseEvent, SseParser


def test_events_across_arbitrary_splits() -> None:
    text = ': keep-alive\n\nevent: log\nid: 1.2\ndata: {"a":\ndata: 1}\n\r\nevent: end\r\ndata: x\r\rdata: é\n\n'
    whole = SseParser().feed(text.encode())
    assert whole == [
        SseEvent(event="log", data='{"a":\n1}', id="1.2"),
        SseEvent(event="end", data="x", id="1.2"),
        SseEvent(event="message", data="é", id="1.2"),
    ]
    p = SseParser()
    one_by_one = [e for b in text.encode() for e in p.feed(bytes([b]))]
    assert one_by_one == whole
