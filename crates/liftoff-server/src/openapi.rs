//! The OpenAPI 3.1 document of `/api/v1`, generated from the code: the
//! routes are registered through utoipa-axum from their `#[utoipa::path]`
//! annotations (so a route cannot exist undocumented), and the bodies'
//! schemas are derived from the very types the server deserialises, with
//! the patterns and bounds the server enforces written on them.
//! `crates/liftoff-server/tests/api_contract.rs` runs schemathesis against a live
//! server with this document.

use utoipa::openapi::OpenApi as Doc;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Liftoff control plane",
        description = "Queues, jobs, run-queue items with leased, fenced claims, agents and logs. \
            Authenticate with 'Authorization: Bearer <api key>'; every key is scoped to one entity, \
            and another entity's objects answer 404 as if they did not exist. Errors are \
            `{code, message, field?}` with `field` naming the request field at fault."
    ),
    servers((url = "/api/v1")),
    security(("bearer" = [])),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut Doc) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

// The path parameters, for the annotations' `params(...)`. The handlers
// extract plain strings; these only describe them. Each pattern is
// `liftoff_core::rules::NAME`'s, written out because the macro takes a
// literal; `tests/api.rs` checks that the document states only the rules'
// patterns.

/// `{entity}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct EntityPath {
    /// The entity (tenant) the key belongs to.
    #[param(pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")]
    entity: String,
}

/// `{entity}/queues/{queue}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct QueuePath {
    #[param(pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")]
    entity: String,
    /// The queue's name.
    #[param(pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")]
    queue: String,
}

/// `{entity}/items/{id}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct ItemPath {
    #[param(pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")]
    entity: String,
    /// The item's id or its run id (one namespace per entity).
    #[param(pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")]
    id: String,
}

/// `{entity}/agents/{id}`, `{entity}/keys/{id}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct IdPath {
    #[param(pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")]
    entity: String,
    /// The object's id, as the server returned it.
    #[param(pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")]
    id: String,
}

/// `{entity}/jobs/{project}/{name}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct JobPath {
    #[param(pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")]
    entity: String,
    #[param(pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")]
    project: String,
    #[param(pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")]
    name: String,
}

/// `{entity}/blobs/{digest}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct BlobPath {
    #[param(pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")]
    entity: String,
    /// `sha256:` and the 64 lowercase hex digits of the archive's hash.
    #[param(pattern = "^sha256:[0-9a-f]{64}$")]
    digest: String,
}

/// The whole document: the annotated routes' paths plus the fixed parts.
pub fn document(paths: Doc) -> Doc {
    let mut doc = ApiDoc::openapi();
    doc.merge(paths);
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}
