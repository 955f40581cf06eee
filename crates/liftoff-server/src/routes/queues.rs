use crate::app::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use liftoff_core::api::CreateQueue;
use liftoff_core::queue::validate_name;
use liftoff_core::template::validate_template;
use liftoff_core::{Queue, ResourceType};

#[utoipa::path(post, path = "/entities/{entity}/queues", operation_id = "createQueue", tag = "queues",
    summary = "Create a queue",
    description = "The config is checked against the resource type's rules and the template variables against the config's placeholders, each error naming its field.",
    params(crate::openapi::EntityPath), request_body = liftoff_core::api::CreateQueue,
    responses((status = 201, description = "the queue", body = liftoff_core::Queue, links(
        ("getQueue" = (operation_id = "getQueue", parameters(("entity" = "$request.path.entity"), ("queue" = "$response.body#/name")))),
        ("launch" = (operation_id = "launch", parameters(("entity" = "$request.path.entity"), ("queue" = "$response.body#/name")))),
        ("queueStream" = (operation_id = "queueStream", parameters(("entity" = "$request.path.entity"), ("queue" = "$response.body#/name"))))
    )), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 415, description = "body is not application/json", body = liftoff_core::api::ErrorBody), (status = 409, description = "conflict", body = liftoff_core::api::ErrorBody), (status = 422, description = "the request is what this document admits, but fails a rule it can only describe in words (named in `field`): the resource type's options, the queue's template variables, a git remote's form, a job the body names that does not exist", body = liftoff_core::api::ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
    ApiJson(req): ApiJson<CreateQueue>,
) -> ApiResult<(StatusCode, Json<Queue>)> {
    caller.may(&entity, Action::Manage)?;
    validate_name("queue name", &req.name).map_err(|m| ApiError::bad_request("name", m))?;
    if !req.config.is_object() {
        return Err(ApiError::bad_request("config", "queue config must be a JSON object"));
    }
    validate_template(&req.config, &req.template_variables)
        .map_err(|e| ApiError::unprocessable(format!("template_variables.{}", e.variable), e.message))?;
    check_config(req.resource, &req.config, "")?;
    let queue = Queue {
        entity,
        name: req.name,
        resource: req.resource,
        config: req.config,
        template_variables: req.template_variables,
        prioritization: req.prioritization,
        created_at_ms: liftoff_store::now_ms(),
    };
    st.store.create_queue(&queue).await?;
    Ok((StatusCode::CREATED, Json(queue)))
}

#[utoipa::path(get, path = "/entities/{entity}/queues", operation_id = "listQueues", tag = "queues", summary = "List queues",
    params(crate::openapi::EntityPath),
    responses((status = 200, description = "the entity's queues", body = Vec<liftoff_core::Queue>), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody)))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
) -> ApiResult<Json<Vec<Queue>>> {
    caller.may(&entity, Action::Read)?;
    Ok(Json(st.store.list_queues(&entity).await?))
}

#[utoipa::path(get, path = "/entities/{entity}/queues/{queue}", operation_id = "getQueue", tag = "queues", summary = "Show a queue",
    params(crate::openapi::QueuePath),
    responses((status = 200, description = "the queue", body = liftoff_core::Queue), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody)))]
pub async fn show(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, queue)): Path<(String, String)>,
) -> ApiResult<Json<Queue>> {
    caller.may(&entity, Action::Read)?;
    let q = st.store.get_queue(&entity, &queue).await?;
    Ok(Json(q.ok_or_else(|| ApiError::not_found("queue", format!("queue '{queue}' not found")))?))
}

/// A queue config against its resource type's rules: 422 naming the first
/// field at fault and listing every problem (`after` says what the config
/// was, at a launch).
pub(crate) fn check_config(resource: ResourceType, config: &serde_json::Value, after: &str) -> ApiResult<()> {
    let problems = liftoff_core::resource::check_config(resource, config);
    match problems.first() {
        None => Ok(()),
        Some(first) => {
            let all: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
            Err(ApiError::unprocessable(first.field.clone(), format!("{}{after}", all.join("; "))))
        }
    }
}
