use crate::app::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, bounded};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use liftoff_core::api::{AddWarning, ItemView, LaunchRequest, LaunchResponse, LaunchSpec, SetPriority};
use liftoff_core::queue::validate_name;
use liftoff_core::template::render;
use liftoff_core::{ItemEvent, JobRef, JobSource, ResourceType};
use liftoff_store::KeyRole;
use liftoff_store::{Launcher, NewItem};
use serde::Deserialize;

/// Short run ids as the reference makes them: 8 chars of `[a-z0-9]`.
pub(crate) fn new_run_id() -> String {
    let raw = uuid::Uuid::new_v4().as_u128();
    (0..8)
        .map(|i| {
            let d = ((raw >> (i * 6)) % 36) as u32;
            char::from_digit(d, 36).unwrap_or('0')
        })
        .collect()
}

/// `POST /queues/{queue}/items`: resolves the job, fills the queue's template
/// and enqueues an item. Every check happens before anything is written.
#[utoipa::path(post, path = "/entities/{entity}/queues/{queue}/items", operation_id = "launch", tag = "items",
    summary = "Launch a job on a queue",
    description = "Resolves the job, fills the queue's template with the typed variables and enqueues an item. Every check happens before anything is written.",
    params(crate::openapi::QueuePath), request_body = liftoff_core::api::LaunchRequest,
    responses((status = 201, description = "the item and its run id", body = liftoff_core::api::LaunchResponse, links(
        ("getItem" = (operation_id = "getItem", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/item_id")))),
        ("stopItem" = (operation_id = "stopItem", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/item_id")))),
        ("setPriority" = (operation_id = "setPriority", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/item_id")))),
        ("itemHistory" = (operation_id = "itemHistory", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/item_id")))),
        ("readLogs" = (operation_id = "readLogs", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/run_id"))))
    )), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 415, description = "body is not application/json", body = liftoff_core::api::ErrorBody), (status = 409, description = "conflict", body = liftoff_core::api::ErrorBody), (status = 422, description = "the request is what this document admits, but fails a rule it can only describe in words (named in `field`): the resource type's options, the queue's template variables, a git remote's form, a job the body names that does not exist", body = liftoff_core::api::ErrorBody)))]
pub async fn launch(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, queue_name)): Path<(String, String)>,
    ApiJson(req): ApiJson<LaunchRequest>,
) -> ApiResult<(StatusCode, Json<LaunchResponse>)> {
    caller.may(&entity, Action::Launch)?;
    Ok((StatusCode::CREATED, Json(launch_item(&st, entity, &queue_name, req, caller.launcher).await?)))
}

/// The launch itself, shared by the API and the web UI's launch form (so
/// both give the same errors, each naming its field). `launched_by` is the
/// launching key.
pub(crate) async fn launch_item(
    st: &AppState,
    entity: String,
    queue_name: &str,
    req: LaunchRequest,
    launched_by: Option<Launcher>,
) -> ApiResult<LaunchResponse> {
    liftoff_core::api::check_launch_bounds(&req).map_err(|(field, m)| {
        let message = format!("{field} {m}");
        // One argument's bound is in the document; the total is not.
        if field == "args" { ApiError::unprocessable(field, message) } else { ApiError::bad_request(field, message) }
    })?;
    let job_ref = JobRef::parse(&req.job);
    let project =
        job_ref.as_ref().ok().and_then(|r| r.project.clone()).unwrap_or_else(liftoff_core::api::default_project);
    // The queue and the job are read at once (a launch waits for one read,
    // not two in a row); errors keep their order: the queue's first.
    let job = async {
        match &job_ref {
            Ok(r) if r.entity.as_deref().is_none_or(|e| e == entity) => {
                st.store.get_job(&entity, &project, &r.name, &r.alias).await
            }
            _ => Ok(None),
        }
    };
    let (queue, job) = tokio::join!(st.store.get_queue(&entity, queue_name), job);
    let queue = queue?.ok_or_else(|| ApiError::not_found("queue", format!("queue '{queue_name}' not found")))?;
    let job_ref = job_ref.map_err(|m| ApiError::bad_request("job", m))?;
    // The launch's target, the queue, exists; the job is named in the body,
    // so its absence makes the body unprocessable (422), not the path unknown.
    let not_found = || ApiError::unprocessable("job", format!("job '{}' not found", req.job));
    if job_ref.entity.as_deref().is_some_and(|e| e != entity) {
        return Err(not_found());
    }
    let job = job?.ok_or_else(not_found)?;
    if !req.run_config.is_object() {
        return Err(ApiError::bad_request("run_config", "run_config must be a JSON object"));
    }
    if let Some(id) = &req.run_id {
        validate_name("run id", id).map_err(|m| ApiError::bad_request("run_id", m))?;
    }
    if queue.resource == ResourceType::LocalProcess && matches!(job.source, JobSource::Image(_)) {
        return Err(ApiError::unprocessable(
            "job",
            format!(
                "job '{}' is an image job; queue '{queue_name}' runs local-process, which cannot run images",
                job.full_name()
            ),
        ));
    }
    let resource_config = render(&queue.config, &queue.template_variables, &req.template_variables, &queue.name)
        .map_err(|e| ApiError::unprocessable(format!("template_variables.{}", e.variable), e.message))?;
    super::queues::check_config(
        queue.resource,
        &resource_config,
        " (the queue's template filled with this launch's variables)",
    )?;
    for (path, value) in &req.file_overrides {
        liftoff_core::api::check_file_override(path, value)
            .map_err(|m| ApiError::unprocessable(format!("file_overrides.{path}"), m))?;
    }
    let entrypoint_overridden = req.entrypoint.is_some();
    let entrypoint = match req.entrypoint {
        Some(ep) if ep.is_empty() => return Err(ApiError::bad_request("entrypoint", "entrypoint must not be empty")),
        Some(ep) => ep,
        None => job.source.entrypoint().to_vec(),
    };
    let spec = LaunchSpec {
        job: job.full_name(),
        project,
        source: job.source.clone(),
        entrypoint,
        args: req.args,
        run_config: req.run_config,
        resource: queue.resource,
        resource_config,
        runtime: job.runtime.clone(),
        entrypoint_overridden,
        file_overrides: serde_json::to_value(&req.file_overrides).unwrap_or_else(|_| liftoff_core::api::empty_object()),
    };
    let item = NewItem {
        id: uuid::Uuid::new_v4().to_string(),
        run_id: req.run_id.unwrap_or_else(new_run_id),
        entity,
        queue: queue.name,
        priority: req.priority.unwrap_or_default(),
        prioritized: queue.prioritization,
        spec,
        now_ms: liftoff_store::now_ms(),
        launched_by,
    };
    let view = {
        let _t = st.metrics.db_timer("enqueue");
        st.store.enqueue(&item).await?
    };
    st.metrics.enqueued();
    st.dispatch.notify();
    st.changes.item(&view.entity, &view.id, Some(&view.queue));
    Ok(LaunchResponse { item_id: view.id, run_id: view.run_id })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this queue's items.
    #[param(pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")]
    queue: Option<String>,
    /// Only items launched by this launcher (a key's name, or its id when
    /// it has none), as items show it in `launched_by`.
    launched_by: Option<String>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/entities/{entity}/items", operation_id = "listItems", tag = "items", summary = "List items, newest first",
    params(crate::openapi::EntityPath, ListQuery),
    responses((status = 200, description = "the items, without credentials", body = Vec<liftoff_core::api::ItemView>), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody)))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<ItemView>>> {
    caller.may(&entity, Action::Read)?;
    let limit = bounded("limit", q.limit, 100, 1, 1000)?;
    if let Some(queue) = &q.queue {
        validate_name("queue", queue).map_err(|m| ApiError::bad_request("queue", m))?;
    }
    Ok(Json(
        st.store
            .list_items(&entity, q.queue.as_deref(), q.launched_by.as_deref().filter(|l| !l.is_empty()), limit)
            .await?
            .into_iter()
            .map(ItemView::without_credentials)
            .collect(),
    ))
}

#[utoipa::path(get, path = "/entities/{entity}/items/{id}", operation_id = "getItem", tag = "items", summary = "Show an item (by item id or run id), with its warnings",
    params(crate::openapi::ItemPath),
    responses((status = 200, description = "the item", body = liftoff_core::api::ItemView), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody)))]
pub async fn show(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
) -> ApiResult<Json<ItemView>> {
    let mut item = readable_item(&st, &caller, &entity, &id, Action::Fetch).await?;
    item.warnings = st.store.list_warnings(&entity, &item.id).await?;
    Ok(Json(item.without_credentials()))
}

/// The item `id` (an item id or a run id) if the caller may read it: a key
/// of its entity allowed `action`, or the item's own run key.
pub async fn readable_item(
    st: &AppState,
    caller: &Caller,
    entity: &str,
    id: &str,
    action: Action,
) -> ApiResult<ItemView> {
    caller.entity(entity)?;
    if !matches!(caller.role, KeyRole::Run { .. }) {
        caller.may(entity, action)?;
    }
    let item = st
        .store
        .get_item(entity, id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", format!("run '{id}' not found")))?;
    caller.reader_of(entity, &item.id)?;
    if matches!(caller.role, KeyRole::Run { .. }) && (item.state.is_terminal() || caller.run_fence != Some(item.fence))
    {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("this run key expired when its claim of run '{}' ended", item.run_id),
        ));
    }
    Ok(item)
}

/// `POST /items/{id}/warnings`: the item's agent (admin key and fence) or the
/// run itself (its run key) records a warning. Repeats are kept once.
#[utoipa::path(post, path = "/entities/{entity}/items/{id}/warnings", operation_id = "addWarning", tag = "items",
    summary = "Record a warning on a run (its agent with the fence, or the run's own key)",
    params(crate::openapi::ItemPath), request_body = liftoff_core::api::AddWarning,
    responses((status = 201, description = "recorded"), (status = 200, description = "the same warning was already recorded"), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 415, description = "body is not application/json", body = liftoff_core::api::ErrorBody), (status = 409, description = "conflict", body = liftoff_core::api::ErrorBody), (status = 422, description = "the request is what this document admits, but fails a rule it can only describe in words (named in `field`): the resource type's options, the queue's template variables, a git remote's form, a job the body names that does not exist", body = liftoff_core::api::ErrorBody)))]
pub async fn add_warning(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<AddWarning>,
) -> ApiResult<StatusCode> {
    let item = readable_item(&st, &caller, &entity, &id, Action::Work).await?;
    let max = liftoff_core::api::MAX_WARNING_CHARS;
    if req.message.is_empty() || req.message.chars().count() > max {
        return Err(ApiError::bad_request("message", format!("a warning needs a message of 1 to {max} characters")));
    }
    let message = req.message.trim();
    if message.is_empty() {
        return Err(ApiError::unprocessable("message", "a warning's message must not be only spaces"));
    }
    let fence = match caller.role {
        KeyRole::Run { .. } => None,
        _ => Some(req.fence.ok_or_else(|| ApiError::unprocessable("fence", "an agent must send its fencing token"))?),
    };
    let added = super::leases::observe(
        &st,
        st.store.add_warning(&entity, &item.id, fence, req.stage, message, liftoff_store::now_ms()).await,
    )?;
    Ok(if added { StatusCode::CREATED } else { StatusCode::OK })
}

/// `POST /items/{id}/stop`: a pending item stops at once; a held one becomes
/// `stopping` and its agent learns of it at its next lease renewal.
#[utoipa::path(post, path = "/entities/{entity}/items/{id}/stop", operation_id = "stopItem", tag = "items",
    summary = "Stop an item",
    description = "A pending item stops at once; a held one becomes `stopping` and its agent stops it. 409 once it has ended.",
    params(crate::openapi::ItemPath),
    responses((status = 200, description = "the item after the request", body = liftoff_core::api::ItemView), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 409, description = "conflict", body = liftoff_core::api::ErrorBody)))]
pub async fn stop(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
) -> ApiResult<Json<ItemView>> {
    caller.may(&entity, Action::Launch)?;
    let item = {
        let _t = st.metrics.db_timer("event");
        st.store.apply_event(&entity, &id, None, &ItemEvent::RequestStop, liftoff_store::now_ms()).await?
    };
    st.metrics.transitioned(&item);
    st.changes.item(&entity, &item.id, Some(&item.queue));
    Ok(Json(item.without_credentials()))
}

/// `POST /items/{id}/priority`: a pending item's new priority (and place in
/// its queue's claim order when the queue orders by priority). 409
/// `not_pending` once an agent has claimed it or it ended.
#[utoipa::path(post, path = "/entities/{entity}/items/{id}/priority", operation_id = "setPriority", tag = "items",
    summary = "Change a pending item's priority (and its place in a prioritising queue)",
    params(crate::openapi::ItemPath), request_body = liftoff_core::api::SetPriority,
    responses((status = 200, description = "the item after the change", body = liftoff_core::api::ItemView), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 409, description = "`not_pending`: an agent claimed the item, or it ended", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 415, description = "body is not application/json", body = liftoff_core::api::ErrorBody))
)]
pub async fn set_priority(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<SetPriority>,
) -> ApiResult<Json<ItemView>> {
    caller.may(&entity, Action::Launch)?;
    let item = st.store.set_priority(&entity, &id, req.priority, liftoff_store::now_ms()).await?;
    st.changes.item(&entity, &item.id, Some(&item.queue));
    Ok(Json(item.without_credentials()))
}
