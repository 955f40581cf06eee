"""Liftoff's Python client: launch jobs on queues, follow their logs, stop them.

Pure Python (standard library only, Python 3.9+). Configured like the CLI,
by ``LIFTOFF_BASE_URL``, ``LIFTOFF_API_KEY`` and ``LIFTOFF_ENTITY`` or by
arguments to :class:`Client`.

Example::

    import liftoff

    run = liftoff.launch(queue="cpu", path="examples/hello", entrypoint="python3 main.py")
    for line in run.logs(follow=True):
        print(f"[{line.stream}] {line.text}")
    print(run.wait())
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

from .archive import PathLike, pack_dir, sha256_digest
from .client import Client, RunEvent
from .errors import (
    ConfigurationError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    Invalid,
    InvalidResponse,
    LiftoffError,
    NotFound,
    RunTimeout,
    ServerError,
    Unauthorized,
)
from .models import Priority
from .run import LogLine, Run, RunResult

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ConfigurationError",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "Invalid",
    "InvalidResponse",
    "LiftoffError",
    "LogLine",
    "NotFound",
    "Run",
    "RunEvent",
    "RunResult",
    "RunTimeout",
    "ServerError",
    "Unauthorized",
    "launch",
    "pack_dir",
    "sha256_digest",
]


def launch(
    queue: str,
    *,
    path: Optional[PathLike] = None,
    job: Optional[str] = None,
    image: Optional[str] = None,
    git: Optional[str] = None,
    commit: Optional[str] = None,
    entrypoint: Optional[Union[str, Sequence[str]]] = None,
    args: Optional[Sequence[str]] = None,
    config: Optional[Mapping[str, Any]] = None,
    template_vars: Optional[Mapping[str, Any]] = None,
    priority: Optional[Priority] = None,
    name: Optional[str] = None,
    project: str = "default",
    run_id: Optional[str] = None,
    runtime: Optional[str] = None,
    client: Optional[Client] = None,
) -> Run:
    """Launches a run with ``client`` (default: a :class:`Client` from the
    environment); see :meth:`Client.launch` for the arguments.

    Example::

        run = liftoff.launch(queue="cpu", path="examples/hello", entrypoint="python3 main.py")
        print(run.id, run.wait().state)
    """
    return (client or Client()).launch(
        queue,
        path=path,
        job=job,
        image=image,
        git=git,
        commit=commit,
        entrypoint=entrypoint,
        args=args,
        config=config,
        template_vars=template_vars,
        priority=priority,
        name=name,
        project=project,
        run_id=run_id,
        runtime=runtime,
    )
