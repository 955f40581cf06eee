use crate::app::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use liftoff_core::Queue;
use liftoff_core::api::CreateQueue;
use liftoff_core::queue::validate_name;
use liftoff_core::template::validate_template;

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
        .map_err(|e| ApiError::bad_request(format!("template_variables.{}", e.variable), e.message))?;
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

pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
) -> ApiResult<Json<Vec<Queue>>> {
    caller.may(&entity, Action::Read)?;
    Ok(Json(st.store.list_queues(&entity).await?))
}

pub async fn show(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, queue)): Path<(String, String)>,
) -> ApiResult<Json<Queue>> {
    caller.may(&entity, Action::Read)?;
    let q = st.store.get_queue(&entity, &queue).await?;
    Ok(Json(q.ok_or_else(|| ApiError::not_found("queue", format!("queue '{queue}' not found")))?))
}
