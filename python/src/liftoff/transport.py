"""HTTP for the client, on the standard library alone (:mod:`urllib.request`).

Why no ``requests``/``httpx``: the package then has no dependencies and
installs anywhere Python 3.9+ runs (a training box, a notebook, a CI image)
without touching its environment. The price is that there is no async
variant: the issue asks for one only where the HTTP library gives it for
free, and the standard library's does not.

Every request of a :class:`~liftoff.Client` goes through one
:class:`Transport`; tests (or callers who want retries, a proxy or logging)
can wrap it::

    class Logging(liftoff.transport.Transport):
        def __init__(self, inner):
            self.inner = inner
        def request(self, method, url, headers, body, timeout):
            print(method, url)
            return self.inner.request(method, url, headers, body, timeout)
        def stream(self, url, headers, timeout):
            return self.inner.stream(url, headers, timeout)

    client = liftoff.Client(transport=Logging(liftoff.transport.UrllibTransport()))
"""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Protocol, Tuple

from .errors import ConfigurationError, ConnectionFailed


@dataclass
class Response:
    """A whole answer. Example: ``Response(status=200, body=b'{}')``."""

    status: int
    body: bytes


class _Body(Protocol):
    def read(self, n: int = -1) -> bytes: ...

    def close(self) -> None: ...


class Stream:
    """An open streamed answer (an event stream), read in pieces.

    Example::

        s = transport.stream(url, headers, 45.0)
        while True:
            piece = s.read()  # b"" at the end
            if not piece:
                break
        s.close()
    """

    def __init__(self, status: int, body: _Body) -> None:
        self.status = status
        self._body = body

    def read(self) -> bytes:
        """The next bytes available (at most one read from the socket);
        ``b""`` once the server closed the stream. A broken connection or a
        silence longer than the stream's timeout raises :class:`ConnectionFailed`."""
        try:
            read1 = getattr(self._body, "read1", None)
            if read1 is not None:
                data: bytes = read1(65536)
                return data
            return self._body.read(65536)
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise ConnectionFailed(f"event stream broke: {e}") from e

    def read_all(self) -> bytes:
        """The rest of the body (for an error answer)."""
        try:
            return self._body.read()
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise ConnectionFailed(f"reading the answer failed: {e}") from e

    def close(self) -> None:
        """Closes the connection."""
        try:
            self._body.close()
        except (OSError, http.client.HTTPException):
            pass


class Transport:
    """What the client needs from HTTP; :class:`UrllibTransport` is the default.

    Example: see the module's docstring.
    """

    def request(
        self, method: str, url: str, headers: Mapping[str, str], body: Optional[bytes], timeout: float
    ) -> Response:
        """Sends one request and returns the whole answer, whatever its
        status; raises :class:`ConnectionFailed` when no answer came."""
        raise NotImplementedError

    def stream(self, url: str, headers: Mapping[str, str], timeout: float) -> Stream:
        """Opens a ``GET`` whose body is read as it comes (``timeout``
        bounds each read); returns the answer whatever its status."""
        raise NotImplementedError


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answers, not something to follow with the key."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class UrllibTransport(Transport):
    """:class:`Transport` over :mod:`urllib.request`. The proxies of the
    environment (``https_proxy``, ``no_proxy``, ...) apply, as they do to
    the CLI, unless ``use_env_proxies`` is false. ``ca_cert``: a PEM file of
    CA certificates trusted beside the system's (a server whose certificate
    a private CA issued), like the CLI's ``--ca-cert``.

    Example: ``Client(transport=UrllibTransport())``.
    """

    def __init__(self, use_env_proxies: bool = True, ca_cert: Optional[str] = None) -> None:
        handlers: List[urllib.request.BaseHandler] = [_NoRedirect()]
        if not use_env_proxies:
            handlers.append(urllib.request.ProxyHandler({}))
        if ca_cert:
            # the system's authorities and, beside them, a private CA's (PEM)
            context = ssl.create_default_context()
            try:
                context.load_verify_locations(cafile=ca_cert)
            except (OSError, ssl.SSLError) as e:
                raise ConfigurationError(f"ca_cert {ca_cert!r}: not a readable PEM certificate bundle: {e}") from e
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)

    def _open(
        self, method: str, url: str, headers: Mapping[str, str], body: Optional[bytes], timeout: float
    ) -> Tuple[int, _Body]:
        req = urllib.request.Request(url, data=body, headers=dict(headers), method=method)
        try:
            resp = self._opener.open(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            return e.code, e  # an answer with an error status: the caller reads its body
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise ConnectionFailed(f"{method} {url} failed: {reason}") from e
        return int(resp.status), resp

    def request(
        self, method: str, url: str, headers: Mapping[str, str], body: Optional[bytes], timeout: float
    ) -> Response:
        status, resp = self._open(method, url, headers, body, timeout)
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise ConnectionFailed(f"{method} {url}: reading the answer failed: {e}") from e
        finally:
            resp.close()
        return Response(status=status, body=data)

    def stream(self, url: str, headers: Mapping[str, str], timeout: float) -> Stream:
        status, resp = self._open("GET", url, headers, None, timeout)
        return Stream(status, resp)


def merge_headers(*parts: Mapping[str, str]) -> Dict[str, str]:
    """Headers merged left to right. Example: ``merge_headers({"a": "1"}, {"b": "2"})``."""
    out: Dict[str, str] = {}
    for p in parts:
        out.update(p)
    return out
