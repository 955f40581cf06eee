//! The OpenAPI 3.2 document of `/api/v1`, generated from the code: the
//! routes are registered through utoipa-axum from their `#[utoipa::path]`
//! annotations (so a route cannot exist undocumented), and the bodies'
//! schemas are derived from the very types the server deserialises, with
//! the patterns and bounds the server enforces written on them.
//! `crates/liftoff-server/tests/it/api_contract.rs` runs schemathesis against a live
//! server with this document.
//!
//! 3.2 rather than 3.1 for the event streams: 3.2's `itemSchema` describes
//! each event of a `text/event-stream` response (its `event` name, `id`
//! and JSON `data`, see [`RunStreamEvent`]), where 3.1 has no way to say
//! what a stream carries. Nothing else in the document changes meaning.

use liftoff_core::api::LogChunk;
use liftoff_core::rules::{QUEUE_EVENT_ID, RUN_EVENT_ID, Rule};
use liftoff_core::{ItemTransition, RunStreamEnd};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Doc, OpenApiVersion, Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

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
    // the streams' `item_schema`s, which the routes do not register
    components(schemas(RunStreamEvent, QueueStreamEvent)),
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
// literal; `tests/it/api.rs` checks that the document states only the rules'
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

// The events of the two streams, for the annotations' `item_schema`: one
// event as an SSE reader parses it (OpenAPI 3.2's reading of
// `text/event-stream`): its `event` name, its `id` (the form a client sends
// back as `Last-Event-ID`) and its `data`, a line of JSON of the schema
// named.

/// One event of a run's stream (`runStream`).
pub struct RunStreamEvent;

impl PartialSchema for RunStreamEvent {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(event("transition", &RUN_EVENT_ID, &ItemTransition::name(), "a state change of the run"))
            .item(event("log", &RUN_EVENT_ID, &LogChunk::name(), "a chunk of the run's log"))
            .item(event(
                "end",
                &RUN_EVENT_ID,
                &RunStreamEnd::name(),
                "the run ended and everything was sent; the last event",
            ))
            .description(Some("One event of a run's stream, told apart by `event`."))
            .into()
    }
}

impl ToSchema for RunStreamEvent {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        for (name, schema) in [
            (ItemTransition::name(), ItemTransition::schema()),
            (LogChunk::name(), LogChunk::schema()),
            (RunStreamEnd::name(), RunStreamEnd::schema()),
        ] {
            schemas.push((name.into(), schema));
        }
        ItemTransition::schemas(schemas);
        LogChunk::schemas(schemas);
        RunStreamEnd::schemas(schemas);
    }
}

/// One event of a queue's stream (`queueStream`).
pub struct QueueStreamEvent;

impl PartialSchema for QueueStreamEvent {
    fn schema() -> RefOr<Schema> {
        let data = ItemTransition::name();
        event("transition", &QUEUE_EVENT_ID, &data, "a state change of one of the queue's items").into()
    }
}

impl ToSchema for QueueStreamEvent {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ItemTransition::name().into(), ItemTransition::schema()));
        ItemTransition::schemas(schemas);
    }
}

/// An event named `name` whose id is of the form `id` and whose data is
/// JSON of the component schema named `data`.
fn event(name: &str, id: &Rule, data: &str, description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .property("event", ObjectBuilder::new().schema_type(Type::String).enum_values(Some([name])))
        .property("id", ObjectBuilder::new().schema_type(Type::String).pattern(Some(id.pattern)))
        .property(
            "data",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/json")
                .content_schema(Some(Ref::from_schema_name(data))),
        )
        .required("event")
        .required("id")
        .required("data")
        .into()
}

/// The whole document: the annotated routes' paths plus the fixed parts.
pub fn document(paths: Doc) -> Doc {
    let mut doc = ApiDoc::openapi();
    doc.merge(paths);
    doc.openapi = OpenApiVersion::Version32;
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}
