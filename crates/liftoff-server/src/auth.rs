use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use liftoff_store::{ApiKeyRecord, KeyRole, Launcher};
use sha2::{Digest, Sha256};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub entity: String,
    pub role: KeyRole,
    /// For a run key: the claim (fencing token) it was minted for.
    pub run_fence: Option<i64>,
    /// A stored key's name and id, which the runs it launches record.
    pub launcher: Option<Launcher>,
}

/// Run keys are not stored: a key is `lft_run.<hex entity>.<item>.<fence>.<mac>`,
/// the MAC an HMAC-SHA256 of the rest under a secret every server on the
/// database shares. Minting one costs a claim no write, and a key dies by
/// itself when its item ends or is claimed again (the fence moves on).
#[derive(Clone)]
pub struct RunKeys {
    secret: std::sync::Arc<Vec<u8>>,
}

const RUN_KEY_PREFIX: &str = "lft_run.";

impl RunKeys {
    /// Reads the shared secret, creating it on first start.
    pub async fn load(
        store: &dyn liftoff_store::Store,
        keys: Option<&crate::secrets_key::SecretsKeys>,
    ) -> Result<Self, crate::secrets_at_rest::SecretsAtRestError> {
        let secret = crate::secrets_at_rest::server_secret(store, keys, "run-keys").await?;
        Ok(Self { secret: std::sync::Arc::new(secret.into_bytes()) })
    }

    fn mac(&self, body: &str) -> hmac::Hmac<Sha256> {
        use hmac::KeyInit;
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        hmac::Mac::update(&mut mac, body.as_bytes());
        mac
    }

    /// The key for the run of `item_id` under claim `fence`.
    pub fn mint(&self, entity: &str, item_id: &str, fence: i64) -> String {
        let body = format!("{RUN_KEY_PREFIX}{}.{item_id}.{fence}", hex::encode(entity));
        let tag = hex::encode(hmac::Mac::finalize(self.mac(&body)).into_bytes());
        format!("{body}.{tag}")
    }

    /// `(entity, item id, fence)` of a genuine run key; `None` for anything else.
    pub fn verify(&self, key: &str) -> Option<(String, String, i64)> {
        let (body, tag) = key.rsplit_once('.')?;
        let tag = hex::decode(tag).ok()?;
        hmac::Mac::verify_slice(self.mac(body), &tag).ok()?;
        let mut parts = body.strip_prefix(RUN_KEY_PREFIX)?.split('.');
        let entity = String::from_utf8(hex::decode(parts.next()?).ok()?).ok()?;
        let (item, fence) = (parts.next()?.to_string(), parts.next()?.parse().ok()?);
        parts.next().is_none().then_some((entity, item, fence))
    }
}

impl Caller {
    /// Refuses callers of another entity with 404, as if the entity did not
    /// exist, so that keys learn nothing about entities they cannot use.
    pub fn entity(&self, path_entity: &str) -> Result<(), ApiError> {
        if self.entity != path_entity {
            return Err(ApiError::not_found("entity", format!("entity '{path_entity}' not found")));
        }
        Ok(())
    }

    /// Entity check plus: the key's role allows `action` (403 otherwise,
    /// naming the role and what it may do).
    pub fn may(&self, path_entity: &str, action: Action) -> Result<(), ApiError> {
        self.entity(path_entity)?;
        let allowed = matches!(
            (&self.role, action),
            (KeyRole::Admin, _)
                | (KeyRole::Member, Action::Launch | Action::Read | Action::Fetch)
                | (KeyRole::Agent, Action::Work | Action::Fetch)
        );
        if allowed {
            return Ok(());
        }
        let can = match self.role {
            KeyRole::Admin => "everything",
            KeyRole::Member => "launch, stop and read runs, and create jobs",
            KeyRole::Agent => "register agents, claim, renew, report and log runs, and read what it runs",
            KeyRole::Run { .. } => "read its own run and record warnings",
        };
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} {} key may not {}; it may {can}",
                if matches!(self.role, KeyRole::Admin | KeyRole::Agent) { "an" } else { "a" },
                self.role.as_str(),
                action.describe()
            ),
        ))
    }

    /// Entity check plus: a key allowed to fetch items, or the run key of this very item.
    pub fn reader_of(&self, path_entity: &str, item_id: &str) -> Result<(), ApiError> {
        match &self.role {
            KeyRole::Run { item_id: own } if own == item_id => self.entity(path_entity),
            KeyRole::Run { .. } => {
                self.entity(path_entity)?;
                Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "a run key may only read its own run"))
            }
            _ => self.may(path_entity, Action::Fetch),
        }
    }
}

/// What a request does, as far as key roles are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The entity's set-up: queues, keys, telling agents to stop. Admin only.
    Manage,
    /// Launch and stop runs, create jobs and upload their code. Admin, member.
    Launch,
    /// Lists and views: items, jobs, queues, agents, logs. Admin, member.
    Read,
    /// An agent's work: register, heartbeat, claim, renew, report, log, warn,
    /// release. Admin, agent.
    Work,
    /// What an agent reads to run an item: the item, its code archive.
    /// Admin, member, agent.
    Fetch,
}

impl Action {
    fn describe(self) -> &'static str {
        match self {
            Self::Manage => "manage queues, keys or agents",
            Self::Launch => "launch or stop runs or create jobs",
            Self::Read => "list or read queues, jobs, runs, agents or logs",
            Self::Work => "act as an agent (claim, renew, report, log)",
            Self::Fetch => "read runs or code archives",
        }
    }
}

/// Hex SHA-256 of a key's secret; only this is stored.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random key secret: `lft_` and 61 hex digits of randomness (two UUIDv4s).
pub fn new_key_secret() -> String {
    format!("lft_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// Creates and stores a new admin key of `entity`, named `admin`; returns
/// its secret, which exists nowhere else afterwards.
pub async fn mint_admin_key(
    store: &dyn liftoff_store::Store,
    entity: &str,
) -> Result<String, liftoff_store::StoreError> {
    Ok(mint_key(store, entity, KeyRole::Admin, Some("admin".into())).await?.0)
}

/// Stores `secret` (an operator's, from a file) as an admin key of `entity`,
/// named `admin`. Another server sharing the database may have stored it
/// first: that is no error.
pub async fn adopt_admin_key(
    store: &dyn liftoff_store::Store,
    entity: &str,
    secret: &str,
) -> Result<(), liftoff_store::StoreError> {
    let rec = ApiKeyRecord {
        id: uuid::Uuid::new_v4().to_string(),
        hash: hash_key(secret),
        entity: entity.to_string(),
        role: KeyRole::Admin,
        created_at_ms: liftoff_store::now_ms(),
        expires_at_ms: None,
        name: Some("admin".into()),
    };
    match store.insert_api_key(&rec).await {
        Ok(()) => Ok(()),
        Err(e) => match store.find_api_key(&rec.hash).await? {
            Some(_) => Ok(()),
            None => Err(e),
        },
    }
}

/// Creates and stores a new key of `entity` with `role` and `name`; returns
/// its secret (which exists nowhere else afterwards) and its record.
pub async fn mint_key(
    store: &dyn liftoff_store::Store,
    entity: &str,
    role: KeyRole,
    name: Option<String>,
) -> Result<(String, ApiKeyRecord), liftoff_store::StoreError> {
    let secret = new_key_secret();
    let rec = ApiKeyRecord {
        id: uuid::Uuid::new_v4().to_string(),
        hash: hash_key(&secret),
        entity: entity.to_string(),
        role,
        created_at_ms: liftoff_store::now_ms(),
        expires_at_ms: None,
        name,
    };
    store.insert_api_key(&rec).await?;
    Ok((secret, rec))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing 'Authorization: Bearer <api key>' header"))?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 512)
            .ok_or_else(|| unauthorized("the Authorization header must be 'Bearer <api key>'"))?;
        if secret.starts_with(RUN_KEY_PREFIX) {
            let (entity, item_id, fence) =
                state.run_keys.verify(secret).ok_or_else(|| unauthorized("unknown API key"))?;
            return Ok(Caller { entity, role: KeyRole::Run { item_id }, run_fence: Some(fence), launcher: None });
        }
        let key = lookup_key(state, &hash_key(secret)).await?.ok_or_else(|| unauthorized("unknown API key"))?;
        if key.expires_at_ms.is_some_and(|t| t <= liftoff_store::now_ms()) {
            return Err(unauthorized("API key has expired"));
        }
        let launcher = Some(key.launcher());
        Ok(Caller { entity: key.entity, role: key.role, run_fence: None, launcher })
    }
}

/// How long a verified key is trusted without asking the store again: a
/// revoked key stops working on every server within this time.
const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_millis(500);
/// Bound on cached keys; the cache is cleared when it is full.
const KEY_CACHE_MAX: usize = 10_000;

/// Finds a key by hash, through a small cache of keys that exist (misses are
/// never cached, so random keys cannot grow it).
async fn lookup_key(state: &AppState, hash: &str) -> Result<Option<ApiKeyRecord>, ApiError> {
    {
        let cache = state.key_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((rec, at)) = cache.get(hash)
            && at.elapsed() < KEY_CACHE_TTL
        {
            return Ok(Some(rec.clone()));
        }
    }
    let found = state.store.find_api_key(hash).await?;
    if let Some(rec) = &found {
        let mut cache = state.key_cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(hash.to_string(), (rec.clone(), std::time::Instant::now()));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_keys_verify_only_as_minted() {
        let keys = RunKeys { secret: std::sync::Arc::new(b"secret".to_vec()) };
        let key = keys.mint("acme.co", "item-1", 3);
        assert_eq!(keys.verify(&key), Some(("acme.co".to_string(), "item-1".to_string(), 3)));
        let other = RunKeys { secret: std::sync::Arc::new(b"other".to_vec()) };
        assert_eq!(other.verify(&key), None, "another installation's key");
        assert_eq!(keys.verify(&key.replace(".3.", ".4.")), None, "another claim");
        assert_eq!(keys.verify(&key.replace("item-1", "item-2")), None, "another item");
        assert_eq!(keys.verify("lft_run.x.y.z"), None);
        assert_eq!(keys.verify(""), None);
    }
}
