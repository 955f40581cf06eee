"""Request and response bodies of the REST API, written by hand after
``components.schemas`` of ``/api/v1/openapi.json`` (each class names its
schema in ``SCHEMA``). The test suite loads the live server's document and
checks every class here against its schema (field names, which are
required, types and enumerations), so the two cannot drift.

A field with a default is optional in the schema; one without is required.
``None`` means "absent": such fields are left out of the JSON sent.

Example::

    from liftoff.models import CreateQueue, TemplateVariable

    req = CreateQueue(name="gpu", resource="local-process",
                      template_variables=[TemplateVariable(name="epochs", type="integer", min=1, max=10)])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Literal, Optional, Tuple, Type, Union

# Enumerations (schemas of type string with `enum`).
ItemState = Literal["pending", "claimed", "running", "stopping", "finished", "failed", "stopped", "preempted"]
"""A run-queue item's state (schema ``ItemState``); see :data:`TERMINAL_STATES`."""
Priority = Literal["critical", "high", "medium", "low"]
ResourceType = Literal["local-process", "local-container", "kubernetes", "sagemaker", "vertex"]
VarKind = Literal["integer", "number", "string"]
LogStream = Literal["stdout", "stderr", "agent", "build"]
Stage = Literal["agent", "build", "run"]
TransitionCause = Literal["user", "agent", "lease-expiry"]
AgentStatus = Literal["polling", "running", "stopped"]
BuildHow = Literal["built", "found", "waited", "appended"]

#: Schema name of each enumeration above, for the drift test.
ENUMS: Dict[str, Any] = {
    "ItemState": ItemState,
    "Priority": Priority,
    "ResourceType": ResourceType,
    "VarKind": VarKind,
    "LogStream": LogStream,
    "Stage": Stage,
    "TransitionCause": TransitionCause,
    "AgentStatus": AgentStatus,
    "BuildHow": BuildHow,
}

#: States after which a run changes no more.
TERMINAL_STATES: Tuple[str, ...] = ("finished", "failed", "stopped", "preempted")


@dataclass
class ErrorBody:
    """Every error response. Example: ``ErrorBody(code="not_found", message="queue 'q' not found", field="queue")``."""

    SCHEMA: ClassVar[str] = "ErrorBody"
    code: str
    message: str
    field: Optional[str] = None


@dataclass
class WhoAmI:
    """``GET /whoami``: the key's entity and role. Example: ``client.whoami().entity``."""

    SCHEMA: ClassVar[str] = "WhoAmI"
    entity: str
    role: str


@dataclass
class TemplateVariable:
    """A typed variable a launch may set to fill a queue's template.

    Example: ``TemplateVariable(name="epochs", type="integer", min=1, max=10, default=3)``.
    """

    SCHEMA: ClassVar[str] = "TemplateVariable"
    name: str
    type: VarKind
    default: Any = None
    description: Optional[str] = None
    enum: Optional[List[Any]] = None
    min: Optional[float] = None
    max: Optional[float] = None


@dataclass
class CreateQueue:
    """``POST /queues``. Example: ``CreateQueue(name="cpu", resource="local-process")``."""

    SCHEMA: ClassVar[str] = "CreateQueue"
    name: str
    resource: ResourceType
    config: Dict[str, Any] = field(default_factory=dict)
    template_variables: List[TemplateVariable] = field(default_factory=list)
    prioritization: bool = False


@dataclass
class Queue:
    """A queue. Example: ``client.get_queue("cpu").resource == "local-process"``."""

    SCHEMA: ClassVar[str] = "Queue"
    entity: str
    name: str
    resource: ResourceType
    config: Any
    template_variables: List[TemplateVariable]
    prioritization: bool
    created_at_ms: int


@dataclass
class CodeSource:
    """A code job's source: an uploaded archive and the command to run.

    Example: ``CodeSource(digest="sha256:...", entrypoint=["python3", "main.py"])``.
    """

    SCHEMA: ClassVar[str] = "CodeSource"
    TAG: ClassVar[str] = "code"
    digest: str
    entrypoint: List[str]
    build_context: Optional[str] = None
    dockerfile: Optional[str] = None
    base_image: Optional[str] = None


@dataclass
class GitSource:
    """A git job's source. Example: ``GitSource(remote="https://host/r.git", commit="abc123", entrypoint=["make"])``."""

    SCHEMA: ClassVar[str] = "GitSource"
    TAG: ClassVar[str] = "git"
    remote: str
    commit: str
    entrypoint: List[str]
    diff_patch: Optional[str] = None
    build_context: Optional[str] = None
    dockerfile: Optional[str] = None
    base_image: Optional[str] = None


@dataclass
class ImageSource:
    """An image job's source. Example: ``ImageSource(image="busybox", args=["echo", "hi"])``."""

    SCHEMA: ClassVar[str] = "ImageSource"
    TAG: ClassVar[str] = "image"
    image: str
    args: List[str] = field(default_factory=list)


JobSource = Union[GitSource, CodeSource, ImageSource]
"""What a stored job runs (schema ``JobSource``: one of three, told apart by ``type``)."""

#: The variants of ``JobSource``, in the schema's ``oneOf`` order.
JOB_SOURCE_VARIANTS: Tuple[Type[Any], ...] = (GitSource, CodeSource, ImageSource)


@dataclass
class JobSourceSpec:
    """A job's source as a request names it: exactly one of the three.

    Example: ``JobSourceSpec(image=ImageSource(image="busybox"))``.
    """

    SCHEMA: ClassVar[str] = "JobSourceSpec"
    git: Optional[GitSource] = None
    code: Optional[CodeSource] = None
    image: Optional[ImageSource] = None


@dataclass
class CreateJob:
    """``POST /jobs``: a job, or a new version of it.

    Example: ``CreateJob(name="hello", source=JobSourceSpec(code=CodeSource(digest=d, entrypoint=["python3", "main.py"])))``.
    """

    SCHEMA: ClassVar[str] = "CreateJob"
    name: str
    source: JobSourceSpec
    project: str = "default"
    aliases: List[str] = field(default_factory=list)
    runtime: Optional[str] = None


@dataclass
class JobView:
    """One version of a job. Example: ``client.get_job("hello").version``."""

    SCHEMA: ClassVar[str] = "JobView"
    entity: str
    project: str
    name: str
    version: int
    aliases: List[str]
    source: JobSource
    created_at_ms: int
    runtime: Optional[str] = None

    @property
    def full_name(self) -> str:
        """``entity/project/name:vN``."""
        return f"{self.entity}/{self.project}/{self.name}:v{self.version}"


@dataclass
class LaunchRequest:
    """``POST /queues/{queue}/items``. Example: ``LaunchRequest(job="default/hello:latest", args=["--lr", "0.1"])``."""

    SCHEMA: ClassVar[str] = "LaunchRequest"
    job: str
    entrypoint: Optional[List[str]] = None
    args: List[str] = field(default_factory=list)
    run_config: Dict[str, Any] = field(default_factory=dict)
    template_variables: Dict[str, Any] = field(default_factory=dict)
    priority: Optional[Priority] = None
    run_id: Optional[str] = None
    file_overrides: Dict[str, Any] = field(default_factory=dict)


@dataclass
class LaunchResponse:
    """What a launch returns. Example: ``client.enqueue("cpu", req).run_id``."""

    SCHEMA: ClassVar[str] = "LaunchResponse"
    item_id: str
    run_id: str


@dataclass
class LaunchSpec:
    """What an agent needs to run an item, frozen at launch. Example: ``item.spec.entrypoint``."""

    SCHEMA: ClassVar[str] = "LaunchSpec"
    job: str
    project: str
    source: JobSource
    entrypoint: List[str]
    args: List[str]
    run_config: Any
    resource: ResourceType
    resource_config: Any
    runtime: Optional[str] = None
    entrypoint_overridden: bool = False
    file_overrides: Any = None


@dataclass
class BuildRecord:
    """The image a run got from its agent's builder. Example: ``item.build.image if item.build else None``."""

    SCHEMA: ClassVar[str] = "BuildRecord"
    image: str
    how: BuildHow
    seconds: float
    builder: str
    digest: Optional[str] = None


@dataclass
class ItemWarning:
    """A warning on a run. Example: ``[w.message for w in item.warnings]``."""

    SCHEMA: ClassVar[str] = "ItemWarning"
    stage: Stage
    message: str
    created_at_ms: int


@dataclass
class ItemView:
    """A run-queue item (a run). Example: ``item = client.get_item(run.item_id); item.state, item.exit_code``."""

    SCHEMA: ClassVar[str] = "ItemView"
    id: str
    run_id: str
    entity: str
    queue: str
    state: ItemState
    priority: Priority
    attempts: int
    fence: int
    spec: LaunchSpec
    created_at_ms: int
    agent_id: Optional[str] = None
    exit_code: Optional[int] = None
    reason: Optional[str] = None
    lease_expires_at_ms: Optional[int] = None
    started_at_ms: Optional[int] = None
    ended_at_ms: Optional[int] = None
    log_archived: bool = False
    stage: Optional[Stage] = None
    resumes: int = 0
    warnings: List[ItemWarning] = field(default_factory=list)
    build: Optional[BuildRecord] = None
    launched_by: Optional[str] = None
    launched_by_key: Optional[str] = None

    @property
    def is_terminal(self) -> bool:
        """The run ended (finished, failed, stopped or preempted)."""
        return self.state in TERMINAL_STATES


@dataclass
class SetPriority:
    """``POST /items/{id}/priority``. Example: ``SetPriority(priority="high")``."""

    SCHEMA: ClassVar[str] = "SetPriority"
    priority: Priority


@dataclass
class ItemTransition:
    """One state change of an item (``from`` is ``from_state`` here).

    Example: ``[(t.from_state, t.to) for t in client.item_history(run.item_id)]``.
    """

    SCHEMA: ClassVar[str] = "ItemTransition"
    item_id: str
    run_id: str
    queue: str
    seq: int
    at_ms: int
    event: str
    to: ItemState
    cause: TransitionCause
    log_seq: int
    queue_seq: Optional[int] = None
    from_state: Optional[ItemState] = field(default=None, metadata={"json": "from"})
    agent_id: Optional[str] = None
    fence: Optional[int] = None
    reason: Optional[str] = None
    exit_code: Optional[int] = None
    stage: Optional[Stage] = None


@dataclass
class LogChunk:
    """A piece of a run's output. Example: ``LogChunk(seq=0, stream="stdout", data="hello\\n")``."""

    SCHEMA: ClassVar[str] = "LogChunk"
    seq: int
    stream: LogStream
    data: str


@dataclass
class LogPage:
    """``GET /items/{id}/logs``. Example: ``page = client.read_logs(run.item_id); page.next_seq``."""

    SCHEMA: ClassVar[str] = "LogPage"
    chunks: List[LogChunk]
    next_seq: int
    complete: bool


@dataclass
class AgentView:
    """An agent. Example: ``[a.hostname for a in client.list_agents()]``."""

    SCHEMA: ClassVar[str] = "AgentView"
    id: str
    entity: str
    queues: List[str]
    hostname: str
    max_jobs: int
    status: AgentStatus
    stop_polling: bool
    heartbeat_at_ms: int
    created_at_ms: int
    version: Optional[str] = None


@dataclass
class BlobRef:
    """An uploaded code archive. Example: ``client.upload_blob(data).digest``."""

    SCHEMA: ClassVar[str] = "BlobRef"
    digest: str
    size: int


#: Every model, for the drift test against ``components.schemas``.
MODELS: Tuple[Type[Any], ...] = (
    ErrorBody,
    WhoAmI,
    TemplateVariable,
    CreateQueue,
    Queue,
    CodeSource,
    GitSource,
    ImageSource,
    JobSourceSpec,
    CreateJob,
    JobView,
    LaunchRequest,
    LaunchResponse,
    LaunchSpec,
    BuildRecord,
    ItemWarning,
    ItemView,
    SetPriority,
    ItemTransition,
    LogChunk,
    LogPage,
    AgentView,
    BlobRef,
)
