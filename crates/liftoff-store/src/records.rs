use liftoff_core::api::{ItemView, LaunchSpec};
use liftoff_core::{JobSource, Priority};

/// What an API key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRole {
    /// Everything within its entity.
    Admin,
    /// Launch, stop and read: a person using the entity's queues.
    Member,
    /// What an agent does: register, claim, renew, report, log, and read
    /// the items and code it runs; nothing else.
    Agent,
    /// Only report about one run: its logs, events and heartbeats. Given to the run itself.
    Run { item_id: String },
}

impl KeyRole {
    /// The stored and printed name of a stored key's role.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Agent => "agent",
            Self::Run { .. } => "run",
        }
    }

    /// A role a key can be created with (run keys are minted per claim).
    pub fn parse_stored(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            "agent" => Some(Self::Agent),
            _ => None,
        }
    }
}

/// An API key as stored: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub hash: String,
    pub entity: String,
    pub role: KeyRole,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    /// Who or what uses the key; a run it launches records it.
    pub name: Option<String>,
}

impl ApiKeyRecord {
    /// What a run launched with this key records as its launcher: the
    /// key's name, else its id.
    pub fn launcher(&self) -> Launcher {
        Launcher { name: self.name.clone().unwrap_or_else(|| self.id.clone()), key_id: self.id.clone() }
    }
}

/// Who launched an item: the launching key's name (or id) and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launcher {
    pub name: String,
    pub key_id: String,
}

/// A run-queue item to enqueue.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub id: String,
    pub run_id: String,
    pub entity: String,
    pub queue: String,
    pub priority: Priority,
    /// Whether the queue orders by priority; otherwise FIFO only.
    pub prioritized: bool,
    pub spec: LaunchSpec,
    pub now_ms: i64,
    pub launched_by: Option<Launcher>,
}

/// A new version of a job (`entity/project/name`), with the aliases it takes.
#[derive(Debug, Clone)]
pub struct NewJobVersion<'a> {
    pub entity: &'a str,
    pub project: &'a str,
    pub name: &'a str,
    pub source: &'a JobSource,
    pub runtime: Option<&'a str>,
    pub aliases: &'a [String],
    pub now_ms: i64,
}

/// A claimed item and the sequence number its next log chunk must carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub item: ItemView,
    pub log_seq_start: i64,
}

/// A git remote with userinfo as stored, and the row it is in
/// ([`crate::Store::git_remotes_with_userinfo`]).
#[derive(Clone)]
pub struct StoredRemote {
    pub at: StoredRemoteAt,
    /// The remote: credentials in it, plain or sealed.
    pub remote: String,
    /// The whole stored JSON document, compared on rewrite.
    pub text: String,
}

/// Where a [`StoredRemote`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredRemoteAt {
    Job { entity: String, project: String, name: String, version: i64 },
    Item { id: String },
}

/// Shows where, never the remote.
impl std::fmt::Debug for StoredRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredRemote").field("at", &self.at).finish_non_exhaustive()
    }
}
