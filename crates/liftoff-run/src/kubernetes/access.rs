//! What the cluster lets this identity do, asked of the API server itself
//! (`SelfSubjectAccessReview`, as `kubectl auth can-i` does), and whether a
//! namespace exists: for `liftoff doctor`, before the first run finds out.

use super::kube_err;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, PostParams};

/// One call the agent makes: `verb` on `resource` (`pods/log` for a
/// subresource) of API group `group`, in `namespace` (`None`: cluster-wide).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub group: String,
    pub resource: String,
    pub verb: String,
    pub namespace: Option<String>,
}

impl std::fmt::Display for Access {
    /// `create jobs.batch`, `get pods/log`: as RBAC names them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (resource, sub) = self.resource.split_once('/').unwrap_or((&self.resource, ""));
        let qualified = if self.group.is_empty() { resource.to_string() } else { format!("{resource}.{}", self.group) };
        let sub = if sub.is_empty() { String::new() } else { format!("/{sub}") };
        write!(f, "{} {qualified}{sub}", self.verb)
    }
}

/// The calls in `wanted` the API server says this identity may not make
/// (one review each; a review the server refuses is an error).
pub async fn denied(client: &Client, wanted: &[Access]) -> Result<Vec<Access>, String> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut out = Vec::new();
    for a in wanted {
        let (resource, sub) = a.resource.split_once('/').unwrap_or((&a.resource, ""));
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(a.group.clone()),
                    resource: Some(resource.to_string()),
                    subresource: (!sub.is_empty()).then(|| sub.to_string()),
                    verb: Some(a.verb.clone()),
                    namespace: a.namespace.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| kube_err(&format!("could not ask whether the agent may {a}"), e))?;
        if !answer.status.is_some_and(|s| s.allowed) {
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// Whether namespace `ns` exists: a dry-run create of a Secret there (the
/// agent may create Secrets, and may well not read namespaces, which are
/// cluster-scoped), which a real server refuses with 404 when it does not.
pub async fn namespace_exists(client: &Client, ns: &str) -> Result<bool, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut probe = Secret::default();
    probe.metadata.name = Some("liftoff-doctor-probe".into());
    let pp = PostParams { dry_run: true, ..PostParams::default() };
    match secrets.create(&pp, &probe).await {
        // 409: a Secret of that name exists, so does the namespace
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(kube_err(&format!("could not check namespace {ns} (a dry-run Secret create)"), e)),
    }
}

/// Whether Secret `name` in `ns` holds `key` (listed by name: the agent may
/// list Secrets, not get them). `Ok(None)`: there is no such Secret;
/// `Ok(Some(keys))`: it exists with these keys.
pub async fn secret_keys(client: &Client, ns: &str, name: &str) -> Result<Option<Vec<String>>, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let lp = kube::api::ListParams::default().fields(&format!("metadata.name={name}"));
    let list = secrets.list(&lp).await.map_err(|e| kube_err(&format!("could not list Secrets in {ns}"), e))?;
    Ok(list.items.into_iter().next().map(|s| {
        let mut keys: Vec<String> = s.data.unwrap_or_default().into_keys().collect();
        keys.extend(s.string_data.unwrap_or_default().into_keys());
        keys
    }))
}

#[cfg(test)]
mod tests {
    use super::Access;

    #[test]
    fn a_call_reads_as_rbac_names_it() {
        let a =
            |g: &str, r: &str, v: &str| Access { group: g.into(), resource: r.into(), verb: v.into(), namespace: None };
        assert_eq!(a("batch", "jobs", "create").to_string(), "create jobs.batch");
        assert_eq!(a("", "pods/log", "get").to_string(), "get pods/log");
        assert_eq!(a("", "secrets", "delete").to_string(), "delete secrets");
    }
}
