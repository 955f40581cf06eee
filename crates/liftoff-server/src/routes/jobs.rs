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
            return Err(ApiError::bad_request(
                format!("aliases[{i}]"),
                format!("alias '{a}' is reserved for versions"),
            ));
        }
    }
    let source = req.source.resolve().map_err(|(f, m)| ApiError::bad_request(f, m))?;
    if let JobSource::Code(c) = &source
        && !st.store.has_blob(&entity, &c.digest).await?
    {
        return Err(ApiError::bad_request(
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

pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
) -> ApiResult<Json<Vec<JobView>>> {
    caller.may(&entity, Action::Read)?;
    Ok(Json(st.store.list_jobs(&entity).await?.into_iter().map(JobView::without_credentials).collect()))
}

#[derive(Deserialize)]
pub struct AliasQuery {
    alias: Option<String>,
}

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
