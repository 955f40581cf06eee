//! Request and response bodies of the REST API (`/api/v1`), shared by the
//! server and the client so that both sides agree by construction.

use crate::item::ItemState;
use crate::job::{JobSource, JobSourceSpec};
use crate::priority::Priority;
use crate::queue::TemplateVariable;
use crate::resource::ResourceType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every error response: a stable machine code, a sentence, and the request field at fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateQueue {
    #[schema(schema_with = crate::rules::name_schema)]
    pub name: String,
    pub resource: ResourceType,
    #[serde(default = "empty_object")]
    #[schema(schema_with = crate::rules::object_schema)]
    pub config: serde_json::Value,
    /// Ours, a list of variables; or the reference's shape, an object of
    /// `{name: {schema: {type, minimum, maximum, enum, default}, description}}`.
    #[serde(default, deserialize_with = "crate::queue::template_variables")]
    #[schema(schema_with = crate::queue::template_variables_schema)]
    pub template_variables: Vec<TemplateVariable>,
    #[serde(default)]
    pub prioritization: bool,
}

pub fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    #[serde(default = "default_project")]
    #[schema(schema_with = crate::rules::name_schema)]
    pub project: String,
    #[schema(schema_with = crate::rules::name_schema)]
    pub name: String,
    pub source: JobSourceSpec,
    #[serde(default)]
    #[schema(schema_with = crate::rules::names_schema)]
    pub aliases: Vec<String>,
    /// Python version the job expects, e.g. "3.11".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

pub fn default_project() -> String {
    "default".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobView {
    pub entity: String,
    pub project: String,
    pub name: String,
    pub version: i64,
    /// Always includes `vN`; `latest` on the newest version.
    pub aliases: Vec<String>,
    pub source: JobSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    pub created_at_ms: i64,
}

impl JobView {
    pub fn full_name(&self) -> String {
        format!("{}/{}/{}:v{}", self.entity, self.project, self.name, self.version)
    }

    /// The view users get: a git remote's credential replaced by `***`.
    pub fn without_credentials(mut self) -> Self {
        self.source = self.source.without_credentials();
        self
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchRequest {
    /// `[[entity/]project/]name[:alias]`.
    #[schema(schema_with = crate::rules::job_ref_schema)]
    pub job: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::rules::optional_command_schema)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    #[schema(schema_with = crate::rules::args_schema)]
    pub args: Vec<String>,
    #[serde(default = "empty_object")]
    #[schema(schema_with = crate::rules::object_schema)]
    pub run_config: serde_json::Value,
    #[serde(default)]
    pub template_variables: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::rules::optional_name_schema)]
    pub run_id: Option<String>,
    /// `{relative path of a .json/.yaml/.yml config file: partial document}`,
    /// handed to the run (`LIFTOFF_FILE_OVERRIDES`) to merge into its files.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub file_overrides: BTreeMap<String, serde_json::Value>,
}

impl Default for LaunchRequest {
    fn default() -> Self {
        Self {
            job: String::new(),
            entrypoint: None,
            args: Vec::new(),
            run_config: empty_object(),
            template_variables: BTreeMap::new(),
            priority: None,
            run_id: None,
            file_overrides: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LaunchResponse {
    pub item_id: String,
    pub run_id: String,
}

/// What an agent needs to run an item, frozen at launch time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LaunchSpec {
    pub job: String,
    pub project: String,
    pub source: JobSource,
    pub entrypoint: Vec<String>,
    pub args: Vec<String>,
    pub run_config: serde_json::Value,
    pub resource: ResourceType,
    /// The queue's template after variable substitution.
    pub resource_config: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The launch replaced the job's entrypoint (refused by agents in secure mode).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub entrypoint_overridden: bool,
    /// See [`LaunchRequest::file_overrides`]; `{}` when none.
    #[serde(default = "empty_object")]
    pub file_overrides: serde_json::Value,
}

/// Checks one `file_overrides` entry as the reference does: a relative path
/// without `..`, ending in `.json`, `.yaml` or `.yml`, and an object value.
pub fn check_file_override(path: &str, value: &serde_json::Value) -> Result<(), String> {
    let p = std::path::Path::new(path);
    if path.is_empty() || p.is_absolute() || path.starts_with('/') || path.contains('\\') {
        return Err(format!("file override path '{path}' must be relative"));
    }
    if p.components().any(|c| !matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir)) {
        return Err(format!("file override path '{path}' must stay inside the run's directory (no '..')"));
    }
    if ![".json", ".yaml", ".yml"].iter().any(|ext| path.ends_with(ext)) {
        return Err(format!("file override path '{path}' must end in .json, .yaml or .yml"));
    }
    if !value.is_object() {
        return Err(format!("file override for '{path}' must be an object (a partial document to merge)"));
    }
    Ok(())
}

/// Longest single argument (or entrypoint word) a launch may carry: Linux
/// refuses to exec a program with one longer than this (`MAX_ARG_STRLEN`,
/// 32 pages, less the terminating NUL).
pub const MAX_LAUNCH_ARG_BYTES: usize = 128 * 1024 - 1;
/// Bound on the entrypoint and arguments of a launch together, well under
/// the 2 MiB a process gets for its arguments and environment.
pub const MAX_LAUNCH_ARGS_TOTAL_BYTES: usize = 768 * 1024;

/// Checks the bounds of a launch's command line; the error names the field
/// (`entrypoint[2]`, `args[0]`, `args`) and its size.
pub fn check_launch_bounds(req: &LaunchRequest) -> Result<(), (String, String)> {
    let mut total = 0usize;
    let words = req.entrypoint.iter().flatten().enumerate().map(|(i, w)| (format!("entrypoint[{i}]"), w));
    for (field, word) in words.chain(req.args.iter().enumerate().map(|(i, a)| (format!("args[{i}]"), a))) {
        if word.len() > MAX_LAUNCH_ARG_BYTES {
            return Err((
                field,
                format!("is {} bytes; one argument may hold at most {MAX_LAUNCH_ARG_BYTES} bytes", word.len()),
            ));
        }
        total += word.len() + 1;
    }
    if total > MAX_LAUNCH_ARGS_TOTAL_BYTES {
        return Err((
            "args".into(),
            format!(
                "the entrypoint and arguments total {total} bytes; a launch may carry at most \
                 {MAX_LAUNCH_ARGS_TOTAL_BYTES} bytes of them"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod launch_bounds_tests {
    use super::*;

    #[test]
    fn bounds_name_the_field() {
        let mut req = LaunchRequest { args: vec!["a".repeat(100_000); 3], ..Default::default() };
        assert_eq!(check_launch_bounds(&req), Ok(()), "300 KB of arguments fit");
        req.args.push("b".repeat(MAX_LAUNCH_ARG_BYTES + 1));
        let (field, msg) = check_launch_bounds(&req).unwrap_err();
        assert_eq!(field, "args[3]");
        assert!(msg.contains("131072 bytes"), "{msg}");
        req.args = vec!["c".repeat(100_000); 8];
        assert_eq!(check_launch_bounds(&req).unwrap_err().0, "args");
        let req = LaunchRequest { entrypoint: Some(vec!["x".repeat(200_000)]), ..Default::default() };
        assert_eq!(check_launch_bounds(&req).unwrap_err().0, "entrypoint[0]");
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemView {
    pub id: String,
    pub run_id: String,
    pub entity: String,
    pub queue: String,
    pub state: ItemState,
    pub priority: Priority,
    pub attempts: u32,
    pub fence: i64,
    pub spec: LaunchSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<i64>,
    /// The run ended and its log moved from the database to the blob store;
    /// no more chunks are accepted. A small log stays in the database (the
    /// server's `--log-keep-max-bytes`), and this stays false.
    #[serde(default)]
    pub log_archived: bool,
    /// Where the run failed (`agent`, `build` or `run`), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<crate::Stage>,
    /// How many times the run was preempted and re-queued to resume.
    #[serde(default)]
    pub resumes: u32,
    /// Warnings the agent or the run reported, oldest first (only filled
    /// when a single item is read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<ItemWarning>,
    /// The image the agent built or found for this run, once it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildRecord>,
    /// Who launched it: the launching API key's name (its id when it has
    /// none). Absent for items launched before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched_by: Option<String>,
    /// The id of the API key that launched it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched_by_key: Option<String>,
}

/// `POST /items/{id}/priority`: a pending item's new priority.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPriority {
    pub priority: Priority,
}

impl ItemView {
    /// The view users and runs get: a git remote's credential replaced by `***`. Only the
    /// claim hands an agent the stored remote.
    pub fn without_credentials(mut self) -> Self {
        self.spec.source = self.spec.source.without_credentials();
        self
    }
}

/// The image a run got from its agent's builder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildRecord {
    /// The reference the run starts from: `repo:tag@sha256:...` when pushed
    /// to a registry, `repo:tag` (with the engine's image id in `digest`)
    /// when it stays in the agent's engine.
    #[schema(schema_with = crate::rules::image_schema)]
    pub image: String,
    /// `sha256:...`: the manifest digest in a registry, or the image id in a local engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// `built` (this run built it), `found` (it existed: no build),
    /// `waited` (another agent built it while this one waited) or
    /// `appended` (the code appended as a layer to its dependency image:
    /// no builder ran for the code).
    pub how: BuildHow,
    /// Time spent getting the image, build and push included.
    #[schema(minimum = 0.0)]
    pub seconds: f64,
    /// The builder: `docker`, `noop`.
    #[schema(max_length = 32)]
    pub builder: String,
}

/// How a run got its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BuildHow {
    Built,
    Found,
    Waited,
    /// The code appended as a layer to the dependency image: no builder ran.
    Appended,
}

impl BuildHow {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Built => "built",
            Self::Found => "found",
            Self::Waited => "waited",
            Self::Appended => "appended",
        }
    }
}

/// `POST /items/{id}/build`: the holder records the run's image.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FencedBuildRecord {
    #[serde(deserialize_with = "crate::rules::int::i64")]
    pub fence: i64,
    pub build: BuildRecord,
}

/// The longest build key (an image reference without digest).
pub const MAX_BUILD_KEY: usize = 512;
/// Longest image reference a build records: a build key with room for `@sha256:<digest>`.
pub const MAX_IMAGE_REF: usize = MAX_BUILD_KEY + 80;
/// Longest warning, in characters.
pub const MAX_WARNING_CHARS: usize = 4096;
/// Longest log chunk, in characters (the agent sends at most this many bytes).
pub const MAX_LOG_CHUNK_CHARS: usize = 256 * 1024;

/// `POST /builds/claim`: an agent asks to build the image `key` (the
/// content-addressed reference it will push). Two agents that need the same
/// content build it once: the first wins a lease; the others wait.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildClaimRequest {
    #[schema(schema_with = crate::rules::build_key_schema)]
    pub key: String,
    #[schema(min_length = 1, max_length = 128)]
    pub agent_id: String,
    /// The claim is done, but the image it names is gone from the registry
    /// (pruned): claim it again to build it again, as if it were free.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gone: bool,
}

/// The answer to a [`BuildClaimRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum BuildClaimAnswer {
    /// Build it: renew with `fence` every `lease_ttl_ms / 3`, then finish.
    Won { fence: i64, lease_ttl_ms: i64 },
    /// Someone built it: use `image`.
    Done { image: String },
    /// Another agent is building it: ask again after `retry_after_ms`.
    Held { holder: String, retry_after_ms: i64 },
}

/// `POST /builds/renew` and `POST /builds/finish`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildUpdate {
    #[schema(schema_with = crate::rules::build_key_schema)]
    pub key: String,
    #[serde(deserialize_with = "crate::rules::int::i64")]
    pub fence: i64,
    /// Finish: the image pushed (`None`: the build failed; the next agent that asks builds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::rules::optional_image_schema)]
    pub image: Option<String>,
}

/// A problem worth a user's attention that did not end the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemWarning {
    pub stage: crate::Stage,
    pub message: String,
    pub created_at_ms: i64,
}

/// `POST /items/{id}/warnings`: by the item's agent (with its fence) or by the
/// run itself (with its run key, no fence). The same message twice is kept once.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddWarning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::rules::int::opt_i64")]
    pub fence: Option<i64>,
    pub stage: crate::Stage,
    #[schema(schema_with = crate::rules::warning_schema)]
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgent {
    #[schema(schema_with = crate::rules::some_names_schema)]
    pub queues: Vec<String>,
    #[serde(default)]
    pub hostname: String,
    /// -1 means unlimited.
    #[schema(schema_with = crate::rules::max_jobs_schema)]
    #[serde(deserialize_with = "crate::rules::int::i64")]
    pub max_jobs: i64,
    #[serde(default)]
    #[schema(schema_with = crate::rules::version_schema)]
    pub version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    Polling,
    Running,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentView {
    pub id: String,
    pub entity: String,
    pub queues: Vec<String>,
    pub hostname: String,
    pub max_jobs: i64,
    pub status: AgentStatus,
    pub stop_polling: bool,
    pub heartbeat_at_ms: i64,
    pub created_at_ms: i64,
    /// The liftoff version the agent registered with (absent for agents
    /// registered before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentHeartbeat {
    pub status: AgentStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentHeartbeatResponse {
    pub stop_polling: bool,
}

/// `POST /keys`: a new API key of the entity.
/// The roles a key can be created with (run keys are minted by claims).
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum NewKeyRole {
    Admin,
    Member,
    Agent,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// `admin` (everything in the entity), `member` (launch, stop, read) or
    /// `agent` (register, claim, renew, report, log).
    #[schema(value_type = NewKeyRole)]
    pub role: String,
    /// Who or what uses it (shown as a run's "launched by"): 1 to 64
    /// characters, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::rules::optional_label_schema)]
    pub name: Option<String>,
}

/// The longest key or saved-filter name, in characters.
pub const MAX_LABEL_CHARS: usize = 64;

/// Checks a name people give to things (an API key, a saved filter): 1 to
/// [`MAX_LABEL_CHARS`] characters, no control characters, not only spaces.
/// Anything else is allowed: pages escape it.
pub fn check_label(value: &str) -> Result<(), String> {
    let n = value.chars().count();
    if value.trim().is_empty() || n > MAX_LABEL_CHARS {
        return Err(format!("must be 1 to {MAX_LABEL_CHARS} characters, not only spaces (got {n})"));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// A stored API key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub role: String,
    pub created_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The answer to `POST /keys`: the secret is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    pub key: ApiKeyView,
    pub secret: String,
}

/// `POST /agents/{id}/release`: the agent gives back every item it claimed
/// and never started, except those it holds (`keep`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseClaims {
    #[serde(default)]
    pub keep: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleasedClaims {
    /// Ids of the items put back in their queues.
    pub released: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    pub agent_id: String,
    /// Tried in this order; the agent rotates it for round robin.
    #[schema(schema_with = crate::rules::some_names_schema)]
    pub queues: Vec<String>,
    /// Long-poll bound; 0 returns at once. Capped by the server.
    #[serde(default)]
    #[serde(deserialize_with = "crate::rules::int::u64")]
    pub wait_ms: u64,
}

#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Claim {
    pub item: ItemView,
    /// Fencing token: send it with every write about this item.
    pub fence: i64,
    pub lease_ttl_ms: i64,
    /// Sequence number the first log chunk of this claim must carry
    /// (an earlier attempt may have shipped some already).
    pub log_seq_start: i64,
    /// A key only this run may use, to read its own item and logs and to
    /// report warnings; it stops working when the item ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_api_key: Option<String>,
}

/// The run key is a secret: shown as `<redacted>`, as the reference logs `_wandb_api_key`.
impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim")
            .field("item", &self.item)
            .field("fence", &self.fence)
            .field("lease_ttl_ms", &self.lease_ttl_ms)
            .field("log_seq_start", &self.log_seq_start)
            .field("run_api_key", &self.run_api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FencedHeartbeat {
    #[serde(deserialize_with = "crate::rules::int::i64")]
    pub fence: i64,
    /// Set by an agent taking a run back after a restart: the response then
    /// carries the item's [`LogPosition`] for this claim. (The run
    /// keeps the key it was started with.)
    #[serde(default)]
    pub resume: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemHeartbeatResponse {
    pub state: ItemState,
    pub stop_requested: bool,
    pub lease_expires_at_ms: i64,
    /// Only when the heartbeat asked with `resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_position: Option<LogPosition>,
}

/// Where a run's log stands for one claim, so that an agent taking the run
/// back after a restart neither repeats nor loses output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogPosition {
    /// The sequence number the next chunk must carry.
    pub next_seq: i64,
    /// Bytes of stdout and stderr stored under this claim's fence, counted
    /// as sent.
    pub stdout_bytes: i64,
    pub stderr_bytes: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FencedEvent {
    #[serde(deserialize_with = "crate::rules::int::i64")]
    pub fence: i64,
    /// `{"event": "start"}`, `{"event": "fail", "reason": "...", "exit_code": 1}`, ...
    pub event: crate::item::ItemEvent,
    /// The run's last log chunk, stored in the same transaction as the
    /// event: an agent reporting an outcome sends its final output with it
    /// instead of in a request of its own. The rules of `POST /logs` apply
    /// (`seq` the next one, a repeat ignored); refused, the event is not
    /// applied either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogTail>,
}

/// A log chunk sent with an event ([`FencedEvent::log`]), under its fence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogTail {
    /// Must equal the item's next sequence number; a repeat of an earlier
    /// sequence number is accepted and ignored, so retries are safe.
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "crate::rules::int::i64")]
    pub seq: i64,
    pub stream: LogStream,
    #[schema(schema_with = crate::rules::log_data_schema)]
    pub data: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Messages from the agent itself about the run.
    Agent,
    /// The output of the run's image build (stage `build`).
    Build,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendLog {
    #[serde(deserialize_with = "crate::rules::int::i64")]
    pub fence: i64,
    /// Must equal the item's next sequence number; a repeat of an earlier
    /// sequence number is accepted and ignored, so retries are safe.
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "crate::rules::int::i64")]
    pub seq: i64,
    pub stream: LogStream,
    #[schema(schema_with = crate::rules::log_data_schema)]
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogChunk {
    pub seq: i64,
    pub stream: LogStream,
    pub data: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogPage {
    pub chunks: Vec<LogChunk>,
    /// Ask for `after=next_seq` to continue.
    pub next_seq: i64,
    /// True when the item is terminal and every chunk has been returned.
    pub complete: bool,
}

/// `GET /whoami`: what the caller's key is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub entity: String,
    /// `admin`, `member`, `agent` or `run`.
    pub role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlobRef {
    pub digest: String,
    pub size: u64,
}
