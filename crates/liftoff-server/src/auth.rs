use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use liftoff_store::{ApiKeyRecord, KeyRole};
use sha2::{Digest, Sha256};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub entity: String,
    pub role: KeyRole,
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

    /// Entity check plus: the key must be an admin key.
    pub fn admin(&self, path_entity: &str) -> Result<(), ApiError> {
        self.entity(path_entity)?;
        match self.role {
            KeyRole::Admin => Ok(()),
            KeyRole::Run { .. } => {
                Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "a run key may only read its own run"))
            }
        }
    }

    /// Entity check plus: an admin key, or the run key of this very item.
    pub fn reader_of(&self, path_entity: &str, item_id: &str) -> Result<(), ApiError> {
        self.entity(path_entity)?;
        match &self.role {
            KeyRole::Admin => Ok(()),
            KeyRole::Run { item_id: own } if own == item_id => Ok(()),
            KeyRole::Run { .. } => {
                Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "a run key may only read its own run"))
            }
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

/// Creates and stores a new admin key of `entity`; returns its secret, which
/// exists nowhere else afterwards.
pub async fn mint_admin_key(
    store: &dyn liftoff_store::Store,
    entity: &str,
) -> Result<String, liftoff_store::StoreError> {
    let (secret, rec) = new_admin_key(entity, liftoff_store::now_ms());
    store.insert_api_key(&rec).await?;
    Ok(secret)
}

/// Longest a run key lives; it also stops working as soon as its run ends.
pub const RUN_KEY_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// Creates and stores a key that only the run of `item_id` may use.
pub async fn mint_run_key(
    store: &dyn liftoff_store::Store,
    entity: &str,
    item_id: &str,
    now_ms: i64,
) -> Result<String, liftoff_store::StoreError> {
    let secret = new_key_secret();
    let rec = ApiKeyRecord {
        id: uuid::Uuid::new_v4().to_string(),
        hash: hash_key(&secret),
        entity: entity.to_string(),
        role: KeyRole::Run { item_id: item_id.to_string() },
        created_at_ms: now_ms,
        expires_at_ms: Some(now_ms + RUN_KEY_TTL_MS),
    };
    store.insert_api_key(&rec).await?;
    Ok(secret)
}

fn new_admin_key(entity: &str, now_ms: i64) -> (String, ApiKeyRecord) {
    let secret = new_key_secret();
    let rec = ApiKeyRecord {
        id: uuid::Uuid::new_v4().to_string(),
        hash: hash_key(&secret),
        entity: entity.to_string(),
        role: KeyRole::Admin,
        created_at_ms: now_ms,
        expires_at_ms: None,
    };
    (secret, rec)
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
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or_else(|| unauthorized("the Authorization header must be 'Bearer <api key>'"))?;
        let key = lookup_key(state, &hash_key(secret)).await?.ok_or_else(|| unauthorized("unknown API key"))?;
        if key.expires_at_ms.is_some_and(|t| t <= liftoff_store::now_ms()) {
            return Err(unauthorized("API key has expired"));
        }
        Ok(Caller { entity: key.entity, role: key.role })
    }
}

/// How long a verified key is trusted without asking the store again.
const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);
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
