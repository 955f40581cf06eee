use crate::app::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use liftoff_core::JobSource;
use liftoff_core::api::{CreateJob, JobView};
use liftoff_core::queue::validate_name;
use liftoff_store::NewJobVersion;
use serde::Deserialize;

#[utoipa::path(post, path = "/entities/{entity}/jobs", operation_id = "createJob", tag = "jobs",
    summary = "Create a job, or a new version of it",
    params(crate::openapi::EntityPath), request_body = liftoff_core::api::CreateJob,
    responses((status = 201, description = "the new version", body = liftoff_core::api::JobView, links(
        ("getJob" = (operation_id = "getJob", parameters(("entity" = "$request.path.entity"), ("project" = "$response.body#/project"), ("name" = "$response.body#/name"))))
    )), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 415, description = "body is not application/json", body = liftoff_core::api::ErrorBody), (status = 409, description = "conflict", body = liftoff_core::api::ErrorBody), (status = 422, description = "the request is what this document admits, but fails a rule it can only describe in words (named in `field`): the resource type's options, the queue's template variables, a git remote's form, a job the body names that does not exist", body = liftoff_core::api::ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
    ApiJson(req): ApiJson<CreateJob>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    caller.may(&entity, Action::Launch)?;
    validate_name("project", &req.project).map_err(|m| ApiError::bad_request("project", m))?;
    validate_name("job name", &req.name).map_err(|m| ApiError::bad_request("name", m))?;
    for (i, a) in req.aliases.iter().enumerate() {
        validate_name("alias", a).map_err(|m| ApiError::bad_request(format!("aliases[{i}]"), m))?;
        if a.strip_prefix('v').is_some_and(|n| n.parse::<u64>().is_ok()) {
            return Err(ApiError::unprocessable(
                format!("aliases[{i}]"),
                format!("alias '{a}' is reserved for versions"),
            ));
        }
    }
    let source = req.source.resolve().map_err(|(f, m)| ApiError::unprocessable(f, m))?;
    let source = crate::secrets_at_rest::seal_source(st.secrets_keys.as_deref(), source);
    if let JobSource::Code(c) = &source
        && !st.store.has_blob(&entity, &c.digest).await?
    {
        return Err(ApiError::unprocessable(
            "source.code.digest",
            format!("no code archive with digest {} was uploaded to entity '{entity}'", c.digest),
        ));
    }
    let job = st
        .store
        .create_job_version(&NewJobVersion {
            entity: &entity,
            project: &req.project,
            name: &req.name,
            source: &source,
            runtime: req.runtime.as_deref(),
            aliases: &req.aliases,
            now_ms: liftoff_store::now_ms(),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(job.without_credentials())))
}

#[utoipa::path(get, path = "/entities/{entity}/jobs", operation_id = "listJobs", tag = "jobs", summary = "List every version of every job",
    params(crate::openapi::EntityPath),
    responses((status = 200, description = "the jobs", body = Vec<liftoff_core::api::JobView>), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody)))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
) -> ApiResult<Json<Vec<JobView>>> {
    caller.may(&entity, Action::Read)?;
    Ok(Json(st.store.list_jobs(&entity).await?.into_iter().map(JobView::without_credentials).collect()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AliasQuery {
    /// `latest` (the default), `vN` or an alias the job was given.
    #[param(pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")]
    alias: Option<String>,
}

#[utoipa::path(get, path = "/entities/{entity}/jobs/{project}/{name}", operation_id = "getJob", tag = "jobs", summary = "Show a job version by alias (default `latest`)",
    params(crate::openapi::JobPath, AliasQuery),
    responses((status = 200, description = "the version", body = liftoff_core::api::JobView), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody)))]
pub async fn show(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, project, name)): Path<(String, String, String)>,
    Query(q): Query<AliasQuery>,
) -> ApiResult<Json<JobView>> {
    caller.may(&entity, Action::Read)?;
    let alias = q.alias.unwrap_or_else(|| "latest".into());
    let job = st.store.get_job(&entity, &project, &name, &alias).await?;
    let job = job.ok_or_else(|| ApiError::not_found("job", format!("job '{project}/{name}:{alias}' not found")))?;
    Ok(Json(job.without_credentials()))
}
