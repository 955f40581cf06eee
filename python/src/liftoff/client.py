"""The client: one server, one entity, one API key.

Configured like the ``liftoff`` CLI, argument first, then environment:

* ``base_url`` / ``LIFTOFF_BASE_URL``, default ``http://127.0.0.1:7434``;
* ``api_key`` / ``LIFTOFF_API_KEY``, else the key in
  ``./liftoff-data/admin.key`` when that file exists (where ``liftoff
  server`` run from the same directory writes it), as the CLI does;
* ``ca_cert`` / ``LIFTOFF_CA_CERT``: a PEM file of CA certificates trusted
  beside the system's, for an ``https`` server whose certificate a private
  CA issued (the CLI's ``--ca-cert``);
* ``entity`` / ``LIFTOFF_ENTITY``, else the key's own entity, asked once
  from ``GET /api/v1/whoami`` (as ``liftoff agent`` does without one; the
  other CLI commands default to ``default``, which is the entity of the
  admin key a fresh server prints, so both agree there).

Example::

    import liftoff

    client = liftoff.Client()  # from LIFTOFF_BASE_URL, LIFTOFF_API_KEY, ...
    client.create_queue("cpu", resource="local-process")
    run = client.launch(queue="cpu", path="examples/hello", entrypoint="python3 main.py")
    for line in run.logs():
        print(line.stream, line.text)
    print(run.wait())
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union

from . import _codec
from .archive import PathLike, pack_dir, sha256_digest
from .errors import ConfigurationError, ConnectionFailed, InvalidResponse, LiftoffError, NotFound, error_for
from .models import (
    AgentView,
    BlobRef,
    CodeSource,
    CreateJob,
    CreateQueue,
    GitSource,
    ImageSource,
    ItemTransition,
    ItemView,
    JobSource,
    JobSourceSpec,
    JobView,
    LaunchRequest,
    LaunchResponse,
    LogChunk,
    LogPage,
    Priority,
    Queue,
    ResourceType,
    SetPriority,
    TemplateVariable,
    WhoAmI,
)
from .run import Run
from .sse import SseParser
from .transport import Transport, UrllibTransport

T = TypeVar("T")

DEFAULT_BASE_URL = "http://127.0.0.1:7434"
#: Where ``liftoff server`` (run from the same directory) writes the admin key.
LOCAL_ADMIN_KEY = os.path.join("liftoff-data", "admin.key")


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name, "").strip()
    return value or None


def _seg(s: str) -> str:
    """Percent-encodes a path segment or query value (only unreserved characters pass)."""
    return urllib.parse.quote(s, safe="-_.~")


def split_entrypoint(entrypoint: Union[str, Sequence[str]]) -> List[str]:
    """A command as words: a list as given, a string split the way a POSIX shell would.

    Example: ``split_entrypoint("python3 'main file.py' -x") == ["python3", "main file.py", "-x"]``.
    """
    if isinstance(entrypoint, str):
        try:
            words = shlex.split(entrypoint)
        except ValueError as e:
            raise ValueError(f"entrypoint {entrypoint!r} cannot be split into words: {e}") from None
    else:
        words = [str(w) for w in entrypoint]
    if not words:
        raise ValueError("entrypoint must not be empty")
    return words


def sanitize_name(s: str) -> str:
    """A job name from a source's name, as the CLI derives one: keeps
    ``[A-Za-z0-9._-]`` (others become ``-``), drops leading ``.``/``-``,
    caps at 64 characters.

    Example: ``sanitize_name(".my dir!") == "my-dir-"``.
    """
    cleaned = "".join(c if (c.isascii() and c.isalnum()) or c in "._-" else "-" for c in s)
    return cleaned.lstrip(".-")[:64]


def image_job_name(image: str) -> str:
    """``registry:5000/org/repo:tag@sha256:...`` → ``repo``. Example: ``image_job_name("busybox:1") == "busybox"``."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def git_job_name(url: str) -> str:
    """``https://host/org/repo.git`` → ``repo``. Example: ``git_job_name("git@h:o/r.git") == "r"``."""
    last = re.split(r"[/:]", redact_git_remote(url).rstrip("/"))[-1]
    return last[: -len(".git")] if last.endswith(".git") else last


def redact_git_remote(remote: str) -> str:
    """A git remote as the server shows it: a URL's password (or, for
    http(s), its user name) replaced by ``***``.

    Example: ``redact_git_remote("https://u:t@h/r.git") == "https://u:***@h/r.git"``.
    """
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@]*)@(.*)$", remote, re.DOTALL)
    if not m:
        return remote
    scheme, userinfo, rest = m.groups()
    user, sep, _password = userinfo.partition(":")
    if sep:
        return f"{scheme}{user}:***@{rest}"
    if scheme.lower() in ("http://", "https://") and user:
        return f"{scheme}***@{rest}"
    return remote


@dataclass
class RunEvent:
    """One event of a run's stream: ``kind`` is ``transition`` (with
    ``transition``), ``log`` (with ``chunk``) or ``end`` (with ``state``);
    ``id`` is its event id ``<transitions>.<log>``, to resume after.

    Example::

        for ev in client.events(run.item_id):
            if ev.kind == "log":
                print(ev.chunk.data, end="")
    """

    kind: str
    id: Optional[str]
    transition: Optional[ItemTransition] = None
    chunk: Optional[LogChunk] = None
    state: Optional[str] = None


class Client:
    """A connection to one Liftoff server, as one entity, with one API key.

    Arguments win over ``LIFTOFF_BASE_URL``, ``LIFTOFF_API_KEY`` and
    ``LIFTOFF_ENTITY`` (see the module's docstring for the defaults).
    ``timeout`` bounds each request; ``stream_timeout`` the silence after
    which an event stream counts as broken (the server sends a keep-alive
    every 15 s) and is opened again.

    Example::

        client = liftoff.Client(base_url="http://127.0.0.1:7434", api_key="lft_...", entity="default")
        print([q.name for q in client.list_queues()])
    """

    def __init__(
        self,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        entity: Optional[str] = None,
        *,
        timeout: float = 120.0,
        stream_timeout: float = 45.0,
        transport: Optional[Transport] = None,
        ca_cert: Optional[str] = None,
    ) -> None:
        base = (base_url or _env("LIFTOFF_BASE_URL") or DEFAULT_BASE_URL).strip().rstrip("/")
        if not re.match(r"^https?://[^/]", base):
            raise ConfigurationError(f"base URL {base!r} must start with http:// or https://")
        self._base = base
        key = (api_key if api_key is not None else _env("LIFTOFF_API_KEY") or "").strip()
        if not key and api_key is None and os.path.isfile(LOCAL_ADMIN_KEY):
            with open(LOCAL_ADMIN_KEY, encoding="utf-8") as f:
                key = f.read().strip()
        if not key:
            raise ConfigurationError("no API key: set LIFTOFF_API_KEY or pass api_key=")
        self._key = key
        self._entity = (entity or _env("LIFTOFF_ENTITY") or "").strip() or None
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        ca = ca_cert or _env("LIFTOFF_CA_CERT")
        if transport is not None and ca_cert:
            raise ConfigurationError("pass ca_cert to the transport you give, not to the client")
        self.transport: Transport = transport or UrllibTransport(ca_cert=ca)

    def __repr__(self) -> str:  # never shows the key
        return f"Client(base_url={self._base!r}, entity={self._entity!r})"

    # -- plumbing ---------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The server's URL, without a trailing ``/``."""
        return self._base

    @property
    def entity(self) -> str:
        """The entity this client works in (asked from ``/whoami`` the first time when not configured).

        Example: ``liftoff.Client().entity == "default"``.
        """
        if self._entity is None:
            self._entity = self.whoami().entity
        return self._entity

    def _headers(self, extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        h = {"authorization": f"Bearer {self._key}", "accept": "application/json"}
        h.update(extra or {})
        return h

    def url(self, path: str) -> str:
        """The URL of ``path`` under the entity. Example: ``client.url("/queues")``."""
        return f"{self._base}/api/v1/entities/{_seg(self.entity)}{path}"

    def _send(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        data: Optional[bytes] = None,
        content_type: Optional[str] = None,
    ) -> Tuple[int, Any]:
        extra: Dict[str, str] = {}
        body: Optional[bytes] = data
        if json_body is not None:
            body = json.dumps(_codec.encode(json_body)).encode()
            extra["content-type"] = "application/json"
        elif content_type is not None:
            extra["content-type"] = content_type
        resp = self.transport.request(method, url, self._headers(extra), body, self.timeout)
        if not 200 <= resp.status < 300:
            raise error_for(resp.status, resp.body)
        if not resp.body:
            return resp.status, None
        try:
            return resp.status, json.loads(resp.body)
        except ValueError as e:
            raise InvalidResponse(f"{method} {url}: the answer is not JSON ({e})", status=resp.status) from e

    def _call(self, cls: Type[T], method: str, path: str, body: Any = None) -> T:
        _, parsed = self._send(method, self.url(path), json_body=body)
        result: T = _codec.decode(cls, parsed)
        return result

    # -- identity -----------------------------------------------------------

    def whoami(self) -> WhoAmI:
        """The entity and role of this client's key (needs no entity).

        Example: ``client.whoami().role == "admin"``.
        """
        _, parsed = self._send("GET", f"{self._base}/api/v1/whoami")
        return _codec.decode_model(WhoAmI, parsed)

    # -- queues -------------------------------------------------------------

    def create_queue(
        self,
        name: str,
        resource: ResourceType = "local-process",
        *,
        config: Optional[Mapping[str, Any]] = None,
        template_variables: Optional[Sequence[Union[TemplateVariable, Mapping[str, Any]]]] = None,
        prioritization: bool = False,
    ) -> Queue:
        """Creates a queue; ``config`` is its resource-config template, whose
        ``{{var}}`` placeholders the ``template_variables`` fill at launch.

        Example::

            client.create_queue("cpu", "local-process",
                                config={"env": {"EPOCHS": "{{epochs}}"}},
                                template_variables=[TemplateVariable(name="epochs", type="integer", min=1, max=10)])
        """
        variables = [
            v if isinstance(v, TemplateVariable) else _codec.decode_model(TemplateVariable, dict(v))
            for v in (template_variables or [])
        ]
        req = CreateQueue(
            name=name,
            resource=resource,
            config=dict(config or {}),
            template_variables=variables,
            prioritization=prioritization,
        )
        return self._call(Queue, "POST", "/queues", req)

    def list_queues(self) -> List[Queue]:
        """The entity's queues. Example: ``[q.name for q in client.list_queues()]``."""
        return self._call(List[Queue], "GET", "/queues")

    def get_queue(self, name: str) -> Queue:
        """One queue; :class:`~liftoff.NotFound` (field ``queue``) when there is none.

        Example: ``client.get_queue("cpu").template_variables``.
        """
        return self._call(Queue, "GET", f"/queues/{_seg(name)}")

    # -- blobs and jobs -------------------------------------------------------

    def upload_blob(self, data: bytes, digest: Optional[str] = None) -> BlobRef:
        """Uploads a code archive (a gzipped tar) under its sha256 digest.

        Example: ``client.upload_blob(liftoff.archive.pack_dir("examples/hello")).digest``.
        """
        digest = digest or sha256_digest(data)
        _, parsed = self._send("PUT", self.url(f"/blobs/{digest}"), data=data, content_type="application/gzip")
        return _codec.decode_model(BlobRef, parsed)

    def create_job(
        self,
        name: str,
        source: Union[JobSourceSpec, CodeSource, GitSource, ImageSource],
        *,
        project: str = "default",
        aliases: Optional[Sequence[str]] = None,
        runtime: Optional[str] = None,
    ) -> JobView:
        """Creates a job, or a new version of it.

        Example: ``client.create_job("busy", ImageSource(image="busybox"))``.
        """
        if isinstance(source, CodeSource):
            spec = JobSourceSpec(code=source)
        elif isinstance(source, GitSource):
            spec = JobSourceSpec(git=source)
        elif isinstance(source, ImageSource):
            spec = JobSourceSpec(image=source)
        else:
            spec = source
        req = CreateJob(name=name, source=spec, project=project, aliases=list(aliases or []), runtime=runtime)
        return self._call(JobView, "POST", "/jobs", req)

    def list_jobs(self) -> List[JobView]:
        """Every version of every job of the entity. Example: ``{j.full_name for j in client.list_jobs()}``."""
        return self._call(List[JobView], "GET", "/jobs")

    def get_job(self, name: str, *, project: str = "default", alias: str = "latest") -> JobView:
        """One job version by alias (``latest``, ``vN`` or one given at creation).

        Example: ``client.get_job("hello", alias="v1").source``.
        """
        return self._call(JobView, "GET", f"/jobs/{_seg(project)}/{_seg(name)}?alias={_seg(alias)}")

    # -- launching -------------------------------------------------------------

    def enqueue(self, queue: str, request: LaunchRequest) -> LaunchResponse:
        """The bare launch call (``POST /queues/{queue}/items``) for a job that exists.

        Example: ``client.enqueue("cpu", LaunchRequest(job="hello")).run_id``.
        """
        return self._call(LaunchResponse, "POST", f"/queues/{_seg(queue)}/items", request)

    def launch(
        self,
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
    ) -> Run:
        """Launches a run on ``queue`` and returns it.

        Exactly one of:

        * ``path``: a directory, packed like ``liftoff job create code``
          (see :mod:`liftoff.archive`) and run with ``entrypoint`` (a list,
          or a string split like a shell; without one, the latest version's).
          The job is named after the directory (or ``name``). When the job's
          latest version already has this source (same digest, entrypoint
          and ``runtime``) it is launched as is; otherwise a new version is
          created, and the archive is uploaded only when no job version of
          the entity references its digest yet. (``liftoff launch PATH`` does
          the same.)
        * ``image``: an image job named after the image (or ``name``),
          created or reused the same way; ``entrypoint`` replaces the image's command.
        * ``git`` with ``commit`` (and ``entrypoint``, or the latest version's):
          a git job named after the repository, created or reused the same way.
        * ``job``: an existing job, ``[project/]name[:alias]``; ``entrypoint``
          then replaces the job's command for this run.

        ``args`` are appended to the command, ``config`` is the run's config
        (``LIFTOFF_CONFIG``), ``template_vars`` fill the queue's template.

        The queue is checked first, so a missing one raises
        :class:`~liftoff.NotFound` (field ``queue``) before anything is
        uploaded or created.

        Example::

            run = client.launch(queue="cpu", path="examples/hello", entrypoint="python3 main.py",
                                config={"greeting": "hi"})
            print(run.wait().exit_code)
        """
        given = [k for k, v in (("path", path), ("job", job), ("image", image), ("git", git)) if v is not None]
        if len(given) != 1:
            raise ValueError(f"launch needs exactly one of path=, job=, image= or git= (got {given or 'none'})")
        if commit is not None and git is None:
            raise ValueError("commit= goes with git=")
        self.get_queue(queue)
        override: Optional[List[str]] = None
        if job is not None:
            if name is not None or runtime is not None:
                raise ValueError("name= and runtime= make a job version: use them with path=, git= or image=, not job=")
            ref = job
            override = split_entrypoint(entrypoint) if entrypoint is not None else None
        elif path is not None:
            directory = os.fspath(path)
            if not os.path.isdir(directory):
                raise ValueError(f"{directory} is not a directory (path= is a directory of code to run)")
            job_name = self._job_name(name, os.path.basename(os.path.realpath(directory)))
            latest = self._latest(project, job_name)
            data = pack_dir(directory)
            code = CodeSource(digest=sha256_digest(data), entrypoint=_job_command(entrypoint, latest, project, job_name))
            ref = self._ensure_job(project, job_name, code, latest, runtime, upload=data)
        elif image is not None:
            if runtime is not None:
                raise ValueError("runtime= applies to path= or git=, not image=")
            job_name = self._job_name(name, image_job_name(image))
            latest = self._latest(project, job_name)
            ref = self._ensure_job(project, job_name, ImageSource(image=image), latest, None, upload=None)
            override = split_entrypoint(entrypoint) if entrypoint is not None else None
        else:
            assert git is not None
            if not commit:
                raise ValueError("git= needs commit= (a SHA, branch or tag)")
            job_name = self._job_name(name, git_job_name(git))
            latest = self._latest(project, job_name)
            src = GitSource(remote=git, commit=commit, entrypoint=_job_command(entrypoint, latest, project, job_name))
            ref = self._ensure_job(project, job_name, src, latest, runtime, upload=None)
        req = LaunchRequest(
            job=ref,
            entrypoint=override,
            args=[str(a) for a in (args or [])],
            run_config=dict(config or {}),
            template_variables=dict(template_vars or {}),
            priority=priority,
            run_id=run_id,
        )
        resp = self.enqueue(queue, req)
        return Run(self, item_id=resp.item_id, run_id=resp.run_id, queue=queue)

    @staticmethod
    def _job_name(given: Optional[str], derived_from: str) -> str:
        if given:
            return given
        derived = sanitize_name(derived_from)
        if not derived:
            raise ValueError(f"cannot derive a job name from {derived_from!r}: pass name=")
        return derived

    def _latest(self, project: str, name: str) -> Optional[JobView]:
        """The job's latest version; ``None`` when there is no such job."""
        try:
            return self.get_job(name, project=project)
        except NotFound:
            return None

    def _ensure_job(
        self,
        project: str,
        name: str,
        source: JobSource,
        latest: Optional[JobView],
        runtime: Optional[str],
        *,
        upload: Optional[bytes],
    ) -> str:
        """The reference of a version of ``project/name`` with ``source``:
        ``latest`` when it has that source and runtime, else a new version
        (uploading ``upload`` first unless a job version already references
        its digest). Pinned (``:vN``), whatever is made meanwhile."""
        if latest is not None and latest.runtime == runtime and _same_source(latest.source, source):
            return f"{project}/{name}:v{latest.version}"
        if upload is not None and isinstance(source, CodeSource):
            if not any(_references(j.source, source.digest) for j in self.list_jobs()):
                self.upload_blob(upload, source.digest)
        view = self.create_job(name, source, project=project, runtime=runtime)
        return f"{project}/{view.name}:v{view.version}"

    # -- runs (items) -------------------------------------------------------------

    def run(self, id: str) -> Run:
        """A :class:`Run` for an existing item (by item id or run id).

        Example: ``client.run("ab12cd34").wait()``.
        """
        item = self.get_item(id)
        return Run(self, item_id=item.id, run_id=item.run_id, queue=item.queue, item=item)

    def list_items(
        self, queue: Optional[str] = None, *, launched_by: Optional[str] = None, limit: int = 100
    ) -> List[ItemView]:
        """Items, newest first (at most ``limit``, 1 to 1000).

        Example: ``[i.state for i in client.list_items("cpu", limit=10)]``.
        """
        q = f"?limit={int(limit)}"
        if queue is not None:
            q += f"&queue={_seg(queue)}"
        if launched_by is not None:
            q += f"&launched_by={_seg(launched_by)}"
        return self._call(List[ItemView], "GET", f"/items{q}")

    def get_item(self, id: str) -> ItemView:
        """One item (by item id or run id), with its warnings. Example: ``client.get_item(run.id).state``."""
        return self._call(ItemView, "GET", f"/items/{_seg(id)}")

    def stop_item(self, id: str) -> ItemView:
        """Stops an item: a pending one at once, a held one through its agent.
        :class:`~liftoff.Conflict` once it has ended.

        Example: ``client.stop_item(run.item_id).state  # 'stopping' or 'stopped'``.
        """
        return self._call(ItemView, "POST", f"/items/{_seg(id)}/stop")

    def set_priority(self, id: str, priority: Priority) -> ItemView:
        """A pending item's new priority. Example: ``client.set_priority(run.item_id, "high")``."""
        return self._call(ItemView, "POST", f"/items/{_seg(id)}/priority", SetPriority(priority=priority))

    def read_logs(self, id: str, *, after: int = 0, limit: Optional[int] = None) -> LogPage:
        """A page of a run's stored log, from chunk ``after`` on.

        Example: ``page = client.read_logs(run.item_id); "".join(c.data for c in page.chunks)``.
        """
        q = f"?after={int(after)}" + (f"&limit={int(limit)}" if limit is not None else "")
        return self._call(LogPage, "GET", f"/items/{_seg(id)}/logs{q}")

    def item_history(self, id: str) -> List[ItemTransition]:
        """An item's state changes, oldest first. Example: ``[t.to for t in client.item_history(run.item_id)]``."""
        return self._call(List[ItemTransition], "GET", f"/items/{_seg(id)}/events")

    def events(
        self, id: str, last_event_id: Optional[str] = None, *, reconnect_timeout: float = 60.0
    ) -> Iterator[RunEvent]:
        """A run's state changes and log as they happen (``GET
        /items/{id}/stream``), from its launch (or after ``last_event_id``)
        to its ``end`` event, after which the iterator stops.

        A dropped connection (a server restart, a network blip, a stream
        silent past ``stream_timeout``) is opened again with the last event
        id seen as ``Last-Event-ID``, so nothing is missed and nothing comes
        twice; it gives up with :class:`~liftoff.ConnectionFailed` after
        ``reconnect_timeout`` seconds without an event.

        Example::

            for ev in client.events(run.item_id):
                print(ev.kind, ev.id)
        """
        url = self.url(f"/items/{_seg(id)}/stream")
        last = last_event_id
        failing_since: Optional[float] = None
        pause = 0.1
        while True:
            headers = self._headers({"accept": "text/event-stream"})
            if last is not None:
                headers["last-event-id"] = last
            error: Optional[LiftoffError] = None
            try:
                stream = self.transport.stream(url, headers, self.stream_timeout)
            except ConnectionFailed as e:
                error = e
            else:
                try:
                    if stream.status != 200:
                        err = error_for(stream.status, stream.read_all())
                        if stream.status < 500 and stream.status != 429:
                            raise err
                        error = err
                    else:
                        parser = SseParser()
                        while True:
                            piece = stream.read()
                            if not piece:
                                break  # closed before `end`: the server stopped
                            for sse in parser.feed(piece):
                                event = _decode_event(sse.event, sse.data, sse.id)
                                if event is None:
                                    continue
                                last = sse.id
                                failing_since, pause = None, 0.1
                                yield event
                                if event.kind == "end":
                                    return
                except ConnectionFailed as e:
                    error = e
                finally:
                    stream.close()
            now = time.monotonic()
            if failing_since is None:
                failing_since = now
            elif now - failing_since > reconnect_timeout:
                detail = f": {error}" if error is not None else ""
                raise ConnectionFailed(
                    f"the event stream of run '{id}' could not be resumed for {reconnect_timeout:.0f} s{detail}"
                )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    # -- agents ----------------------------------------------------------------------

    def list_agents(self) -> List[AgentView]:
        """The entity's agents. Example: ``[(a.hostname, a.status) for a in client.list_agents()]``."""
        return self._call(List[AgentView], "GET", "/agents")


def _job_command(
    entrypoint: Optional[Union[str, Sequence[str]]], latest: Optional[JobView], project: str, name: str
) -> List[str]:
    """The command of a directory's or commit's job: the one given, else the latest version's."""
    if entrypoint is not None:
        return split_entrypoint(entrypoint)
    if latest is not None and isinstance(latest.source, (CodeSource, GitSource)) and latest.source.entrypoint:
        return list(latest.source.entrypoint)
    raise ValueError(f"the job {project}/{name} has no command yet: pass entrypoint= (e.g. 'python3 main.py')")


def _decode_event(kind: str, data: str, id: Optional[str]) -> Optional[RunEvent]:
    if kind not in ("log", "transition", "end"):
        return None  # a kind this client does not know
    try:
        parsed = json.loads(data)
    except ValueError as e:
        raise InvalidResponse(f"'{kind}' event is not JSON: {e}") from e
    if kind == "log":
        return RunEvent(kind, id, chunk=_codec.decode_model(LogChunk, parsed))
    if kind == "transition":
        return RunEvent(kind, id, transition=_codec.decode_model(ItemTransition, parsed))
    state = parsed.get("state") if isinstance(parsed, dict) else None
    if not isinstance(state, str):
        raise InvalidResponse(f"'end' event without a state: {data!r}")
    return RunEvent(kind, id, state=state)


def _same_source(have: JobSource, want: JobSource) -> bool:
    """Whether a stored source is the one wanted (a git remote compared as the server shows it)."""
    if type(have) is not type(want):
        return False
    a, b = _codec.encode(have), _codec.encode(want)
    if isinstance(want, GitSource):
        b["remote"] = redact_git_remote(want.remote)
    return bool(a == b)


def _references(source: JobSource, digest: str) -> bool:
    if isinstance(source, CodeSource):
        return source.digest == digest
    if isinstance(source, GitSource):
        return source.diff_patch == digest
    return False
