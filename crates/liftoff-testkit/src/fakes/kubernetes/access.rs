//! Who may do what: the fake's RBAC authorizer, for one user.
//!
//! Off by default (every request is allowed, as for a cluster admin). With
//! [`Rbac`] set, every API request is authorized as a real API server's
//! RBAC authorizer does it (the request's verb, API group, resource,
//! subresource and namespace against a Role's rules in its namespace and a
//! ClusterRole's everywhere, `*` matching anything) and refused with the
//! real `403 Forbidden` Status; `SelfSubjectAccessReview` answers from the
//! same rules. Discovery, `/version` and access reviews themselves are
//! always allowed (the `system:discovery` and `system:basic-user` roles of
//! a real cluster). Not modelled: several users, groups, `resourceNames`,
//! aggregation, bindings as objects (the rules are given directly).

use super::{Res, status};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The rules of the one user the fake serves.
#[derive(Debug, Clone)]
pub struct Rbac {
    /// As it appears in a refusal: `system:serviceaccount:<ns>:<name>`.
    pub user: String,
    /// Where the Role's rules apply.
    pub role_namespace: String,
    role: Vec<Rule>,
    cluster: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

/// What a request asks to do, as the authorizer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    /// `None`: cluster-scoped (or across every namespace).
    pub namespace: Option<String>,
    pub name: String,
}

impl Rbac {
    /// From a `Role` (bound in `role_namespace`) and a `ClusterRole`, as
    /// Kubernetes objects (`rules: [{apiGroups, resources, verbs}]`).
    pub fn new(user: &str, role_namespace: &str, role: &Value, cluster_role: &Value) -> Result<Self, String> {
        Ok(Self {
            user: user.into(),
            role_namespace: role_namespace.into(),
            role: rules(role)?,
            cluster: rules(cluster_role)?,
        })
    }

    /// Whether the rules allow `a`.
    pub fn allows(&self, a: &Attributes) -> bool {
        let in_role = a.namespace.as_deref() == Some(self.role_namespace.as_str());
        self.cluster.iter().any(|r| r.allows(a)) || (in_role && self.role.iter().any(|r| r.allows(a)))
    }

    /// The real server's refusal of `a`.
    pub fn forbidden(&self, a: &Attributes) -> Response {
        let mut details = json!({"group": a.group, "kind": a.resource});
        if !a.name.is_empty() {
            details["name"] = json!(a.name);
        }
        status(403, "Forbidden", self.forbidden_message(a), details)
    }

    /// The real server's words (its `forbiddenMessage`).
    fn forbidden_message(&self, a: &Attributes) -> String {
        let resource =
            if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
        let qualified = if a.group.is_empty() { a.resource.clone() } else { format!("{}.{}", a.resource, a.group) };
        let named = if a.name.is_empty() { String::new() } else { format!(" \"{}\"", a.name) };
        let scope = match &a.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".into(),
        };
        format!(
            "{qualified}{named} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
            self.user, a.verb, a.group
        )
    }
}

impl Rule {
    fn allows(&self, a: &Attributes) -> bool {
        let any = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        let resource =
            if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
        any(&self.groups, &a.group) && any(&self.resources, &resource) && any(&self.verbs, &a.verb)
    }
}

fn rules(role: &Value) -> Result<Vec<Rule>, String> {
    let strings = |v: &Value, field: &str, i: usize| -> Result<Vec<String>, String> {
        v[field]
            .as_array()
            .ok_or_else(|| format!("rules[{i}].{field}: a list is required"))?
            .iter()
            .map(|s| s.as_str().map(str::to_string).ok_or_else(|| format!("rules[{i}].{field}: strings only")))
            .collect()
    };
    let Some(list) = role["rules"].as_array() else { return Ok(vec![]) };
    list.iter()
        .enumerate()
        .map(|(i, r)| {
            if r.get("resourceNames").is_some() || r.get("nonResourceURLs").is_some() {
                return Err(format!("rules[{i}]: resourceNames and nonResourceURLs are not modelled by the fake"));
            }
            Ok(Rule {
                groups: strings(r, "apiGroups", i)?,
                resources: strings(r, "resources", i)?,
                verbs: strings(r, "verbs", i)?,
            })
        })
        .collect()
}

/// The attributes of an API request; `None` for what is always allowed
/// (discovery, `/version`, access reviews, the fake's own `/_fake` API).
pub fn attributes(method: &str, path: &str, query: &str) -> Option<Attributes> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/... or /apis/<group>/<version>/...
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        // a namespace object itself
        ["namespaces"] => (None, &["namespaces"][..]),
        ["namespaces", name] => {
            return Some(Attributes {
                verb: verb(method, true, query),
                group: String::new(),
                resource: "namespaces".into(),
                subresource: String::new(),
                namespace: None,
                name: name.to_string(),
            });
        }
        ["namespaces", ns, rest @ ..] => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [] => return None, // discovery: /api/v1, /apis/<g>/<v>
        [resource] => (*resource, "", ""),
        [resource, name] => (*resource, *name, ""),
        [resource, name, sub] => (*resource, *name, *sub),
        _ => return None,
    };
    if group == "authorization.k8s.io" && resource.starts_with("self") {
        return None;
    }
    Some(Attributes {
        verb: verb(method, !name.is_empty(), query),
        group: group.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        namespace,
        name: name.into(),
    })
}

fn verb(method: &str, named: bool, query: &str) -> String {
    let watching = query.split('&').any(|kv| kv == "watch=1" || kv == "watch=true");
    match (method, named) {
        ("GET", _) if watching => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
    .into()
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: the
/// review with its `status`, as the real server answers it.
pub fn review(rbac: Option<&Rbac>, mut body: Value) -> Response {
    let spec = &body["spec"];
    let allowed = match (&spec["resourceAttributes"], rbac) {
        (_, None) => true,
        (Value::Object(r), Some(rbac)) => {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let ns = s("namespace");
            rbac.allows(&Attributes {
                verb: s("verb"),
                group: s("group"),
                resource: s("resource"),
                subresource: s("subresource"),
                namespace: (!ns.is_empty()).then_some(ns),
                name: s("name"),
            })
        }
        // non-resource URLs: discovery is open to everyone
        (_, Some(_)) => spec["nonResourceAttributes"].is_object(),
    };
    body["kind"] = json!("SelfSubjectAccessReview");
    body["apiVersion"] = json!("authorization.k8s.io/v1");
    if !body["metadata"].is_object() {
        body["metadata"] = json!({});
    }
    body["metadata"]["creationTimestamp"] = Value::Null;
    body["status"] = if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed by the fake's rules"})
    } else {
        json!({"allowed": false})
    };
    (axum::http::StatusCode::CREATED, axum::Json(body)).into_response()
}

/// A review sent as protobuf (kubectl sends built-in types so: the
/// `k8s\0` magic, a `runtime.Unknown` whose field 2 holds the
/// `SelfSubjectAccessReview`), read into its JSON form. Only the fields a
/// review's question has are read (spec.resourceAttributes and
/// spec.nonResourceAttributes); a hand-written reader of protobuf's wire
/// format, because the fake needs eight string fields of one message and
/// no generated Kubernetes protobuf types exist for Rust.
pub fn review_from_protobuf(body: &[u8]) -> Result<Value, String> {
    let raw = body.strip_prefix(b"k8s\0").ok_or("no k8s protobuf magic")?;
    let object = field(raw, 2)?.ok_or("runtime.Unknown without raw bytes")?;
    let spec = field(object, 2)?.unwrap_or_default();
    let mut out = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {}});
    if let Some(r) = field(spec, 1)? {
        let names = ["namespace", "verb", "group", "version", "resource", "subresource", "name"];
        let mut attrs = serde_json::Map::new();
        for (i, n) in names.iter().enumerate() {
            if let Some(v) = field(r, i as u64 + 1)? {
                attrs.insert(n.to_string(), json!(String::from_utf8_lossy(v)));
            }
        }
        out["spec"]["resourceAttributes"] = Value::Object(attrs);
    }
    if let Some(n) = field(spec, 2)? {
        let path = field(n, 1)?.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
        let verb = field(n, 2)?.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
        out["spec"]["nonResourceAttributes"] = json!({"path": path, "verb": verb});
    }
    Ok(out)
}

/// The first length-delimited field `want` of a protobuf message (other
/// fields are skipped by their wire type); bounded by the message's length.
fn field(mut msg: &[u8], want: u64) -> Result<Option<&[u8]>, String> {
    fn varint(b: &mut &[u8]) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first().ok_or("a truncated varint")?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint longer than 64 bits".into())
    }
    while !msg.is_empty() {
        let key = varint(&mut msg)?;
        let (number, wire) = (key >> 3, key & 7);
        let skip = match wire {
            0 => {
                varint(&mut msg)?;
                0
            }
            1 => 8,
            2 => {
                let len = usize::try_from(varint(&mut msg)?).map_err(|_| "a length too large")?;
                if len > msg.len() {
                    return Err("a field longer than its message".into());
                }
                if number == want {
                    return Ok(Some(&msg[..len]));
                }
                len
            }
            5 => 4,
            w => return Err(format!("wire type {w} is not read")),
        };
        msg = msg.get(skip..).ok_or("a truncated field")?;
    }
    Ok(None)
}

/// The resource type of a review, for discovery.
pub fn reviews() -> Res {
    Res::new("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rbac() -> Rbac {
        let role = json!({"rules": [
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        ]});
        let cluster = json!({"rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list"]}]});
        Rbac::new("system:serviceaccount:default:agent", "runs", &role, &cluster).unwrap()
    }

    #[test]
    fn requests_map_to_the_verbs_and_resources_rbac_sees() {
        let a = attributes("GET", "/apis/batch/v1/namespaces/runs/jobs", "labelSelector=x&watch=1").unwrap();
        assert_eq!((a.verb.as_str(), a.group.as_str(), a.resource.as_str()), ("watch", "batch", "jobs"));
        assert_eq!(a.namespace.as_deref(), Some("runs"));
        let a = attributes("GET", "/api/v1/namespaces/runs/pods/p-1/log", "follow=true").unwrap();
        assert_eq!((a.verb.as_str(), a.resource.as_str(), a.subresource.as_str()), ("get", "pods", "log"));
        let a = attributes("DELETE", "/api/v1/namespaces/runs/secrets/s", "").unwrap();
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("delete", "s"));
        let a = attributes("GET", "/apis/batch/v1/jobs", "").unwrap();
        assert_eq!((a.verb.as_str(), a.namespace.clone()), ("list", None));
        let a = attributes("GET", "/api/v1/namespaces/runs", "").unwrap();
        assert_eq!((a.verb.as_str(), a.resource.as_str(), a.namespace.clone()), ("get", "namespaces", None));
        assert!(attributes("GET", "/apis/batch/v1", "").is_none(), "discovery is always allowed");
        assert!(attributes("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "").is_none());
    }

    #[test]
    fn a_role_applies_in_its_namespace_and_a_cluster_role_everywhere() {
        let r = rbac();
        let at = |verb: &str, resource: &str, sub: &str, ns: Option<&str>| Attributes {
            verb: verb.into(),
            group: if resource == "jobs" { "batch".into() } else { String::new() },
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.map(str::to_string),
            name: String::new(),
        };
        assert!(r.allows(&at("create", "jobs", "", Some("runs"))));
        assert!(!r.allows(&at("create", "jobs", "", Some("other"))), "the Role is bound in one namespace");
        assert!(r.allows(&at("list", "jobs", "", None)), "the ClusterRole lists everywhere");
        assert!(r.allows(&at("get", "pods", "log", Some("runs"))));
        assert!(!r.allows(&at("get", "pods", "", Some("runs"))), "pods/log does not grant pods");
        assert!(!r.allows(&at("delete", "jobs", "", Some("runs"))));
    }

    #[test]
    fn a_protobuf_review_reads_as_its_json() {
        // as kubectl 1.33 sends `auth can-i get pods --subresource=log -n runs`
        fn msg(fields: &[(u8, &[u8])]) -> Vec<u8> {
            let mut out = Vec::new();
            for (n, v) in fields {
                out.push((n << 3) | 2);
                out.push(u8::try_from(v.len()).unwrap());
                out.extend_from_slice(v);
            }
            out
        }
        let attrs = msg(&[(1, b"runs"), (2, b"get"), (3, b""), (5, b"pods"), (6, b"log")]);
        let spec = msg(&[(1, &attrs)]);
        let review = msg(&[(1, b""), (2, &spec)]);
        let type_meta = msg(&[(1, b"authorization.k8s.io/v1"), (2, b"SelfSubjectAccessReview")]);
        let mut body = b"k8s\0".to_vec();
        body.extend(msg(&[(1, &type_meta), (2, &review), (3, b""), (4, b"")]));
        let v = review_from_protobuf(&body).unwrap();
        assert_eq!(
            v["spec"]["resourceAttributes"],
            json!({"namespace": "runs", "verb": "get", "group": "", "resource": "pods", "subresource": "log"})
        );
        assert!(review_from_protobuf(b"k8s\0\x12\x7f").is_err(), "a field longer than its message");
        assert!(review_from_protobuf(b"{}").is_err());
    }

    #[test]
    fn a_refusal_reads_as_the_real_servers() {
        let r = rbac();
        let a = attributes("DELETE", "/apis/batch/v1/namespaces/runs/jobs/j-1", "").unwrap();
        assert_eq!(r.forbidden(&a).status(), 403);
        assert_eq!(
            r.forbidden_message(&a),
            "jobs.batch \"j-1\" is forbidden: User \"system:serviceaccount:default:agent\" cannot delete resource \"jobs\" in API group \"batch\" in the namespace \"runs\""
        );
        let a = attributes("GET", "/api/v1/namespaces/runs/pods/p-1/log", "").unwrap();
        assert!(r.allows(&a));
        let a = attributes("GET", "/api/v1/namespaces/other/pods/p-1/log", "").unwrap();
        assert_eq!(
            r.forbidden_message(&a),
            "pods \"p-1\" is forbidden: User \"system:serviceaccount:default:agent\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"other\""
        );
        let a = attributes("GET", "/api/v1/pods", "").unwrap();
        assert!(
            r.forbidden_message(&a).ends_with("cannot list resource \"pods\" in API group \"\" at the cluster scope")
        );
    }
}
