"""Exceptions raised by the Liftoff client.

Every error the server answers is a JSON body ``{code, message, field}``
(``ErrorBody`` in ``/api/v1/openapi.json``); the client raises it as a
:class:`LiftoffError` (or the subclass for its HTTP status) carrying the
status and the three fields::

    import liftoff

    try:
        liftoff.launch(queue="no-such-queue", job="hello")
    except liftoff.NotFound as e:
        print(e.status, e.code, e.field, e.message)  # 404 not_found queue ...
"""

from __future__ import annotations

import json
from typing import Dict, Optional, Type


class LiftoffError(Exception):
    """Base of every error the client raises.

    ``status`` is the HTTP status (``None`` when no answer came, e.g. the
    server could not be reached); ``code`` the server's stable machine code
    (``not_found``, ``unprocessable``, ...); ``message`` its sentence;
    ``field`` the request field at fault, when the server named one.

    Example::

        try:
            client.get_queue("gpu")
        except LiftoffError as e:
            print(e.code, e.field)
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: str = "client",
        field: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def __str__(self) -> str:
        parts = []
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.field:
            parts.append(f"field '{self.field}'")
        suffix = f" ({', '.join(parts)})" if parts else ""
        return f"{self.message}{suffix}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, field={self.field!r})"
        )


class ConfigurationError(LiftoffError):
    """The client cannot be set up: no API key, a bad base URL, a bad argument.

    Example::

        try:
            liftoff.Client(api_key="")
        except liftoff.ConfigurationError as e:
            print(e)  # no API key: set LIFTOFF_API_KEY or pass api_key=
    """


class ConnectionFailed(LiftoffError):
    """The server could not be reached, or the connection broke (no HTTP status).

    Example::

        try:
            liftoff.Client(base_url="http://127.0.0.1:1", api_key="k").whoami()
        except liftoff.ConnectionFailed as e:
            print(e)
    """


class InvalidResponse(LiftoffError):
    """The server answered something that is not the JSON the API documents.

    Example::

        except liftoff.InvalidResponse as e:
            print(e.message)
    """


class Invalid(LiftoffError):
    """400 or 422: the request (or a field of it, named in ``field``) is invalid.

    Example::

        try:
            client.launch(queue="q", job="j", template_vars={"epochs": 99})
        except liftoff.Invalid as e:
            assert e.field == "template_variables.epochs"
    """


class Unauthorized(LiftoffError):
    """401: no API key, or an unknown or revoked one.

    Example::

        except liftoff.Unauthorized:
            print("check LIFTOFF_API_KEY")
    """


class Forbidden(LiftoffError):
    """403: the key's role may not do this.

    Example::

        except liftoff.Forbidden as e:
            print(e.message)
    """


class NotFound(LiftoffError):
    """404: the queue, job or run does not exist (``field`` names which).

    Example::

        try:
            client.get_queue("nope")
        except liftoff.NotFound as e:
            assert e.field == "queue"
    """


class Conflict(LiftoffError):
    """409: the object exists already, or moved on (e.g. stopping an ended run).

    Example::

        try:
            client.create_queue("cpu")
        except liftoff.Conflict:
            pass  # already there
    """


class ServerError(LiftoffError):
    """5xx (or 429): the server had a problem; worth retrying later.

    Example::

        except liftoff.ServerError as e:
            print(e.status)
    """


class RunTimeout(LiftoffError, TimeoutError):
    """:meth:`liftoff.Run.wait` gave up before the run ended.

    Example::

        try:
            run.wait(timeout=5)
        except liftoff.RunTimeout:
            run.stop()
    """


_BY_STATUS: Dict[int, Type[LiftoffError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
    429: ServerError,
}


def error_for(status: int, body: bytes) -> LiftoffError:
    """The exception for an error answer: its class from ``status``, its
    fields from the JSON ``ErrorBody`` (or the raw text when the body is not one).

    Example::

        e = error_for(404, b'{"code":"not_found","message":"queue \\'q\\' not found","field":"queue"}')
        assert isinstance(e, NotFound) and e.field == "queue"
    """
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else LiftoffError)
    code, message, field = "http", body[:500].decode("utf-8", "replace").strip(), None
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        code = str(parsed.get("code") or "http")
        message = parsed["message"]
        f = parsed.get("field")
        field = f if isinstance(f, str) else None
    if not message:
        message = f"HTTP {status}"
    return cls(message, status=status, code=code, field=field)
