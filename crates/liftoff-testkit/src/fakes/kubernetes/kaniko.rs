//! The kube-fake's kaniko executor: a Job whose container runs the kaniko
//! executor (`--context=` and `--destination=` among its arguments) is
//! checked for the shape Liftoff's builder gives it, its context object is
//! fetched from the object store it names (S3 through `S3_ENDPOINT` and
//! the credentials mounted at `/root/.aws`, Azure Blob through azurite and
//! `AZURE_STORAGE_ACCESS_KEY`, GCS through the GCP fake (`fakes/gcp.rs`)
//! with the service-account key mounted at `/kaniko/.config/gcloud`),
//! built on a real Docker engine and pushed to
//! `--destination` with the logins of the `config.json` mounted at
//! `/kaniko/.docker`; the pod runs while it builds, its log is the
//! build's output, and it succeeds or fails with the build. So the image a
//! run gets was really built from the uploaded context.

use super::{PodState, Res, Shared};
use base64::Engine;
use futures::StreamExt;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What the fake needs to act as kaniko.
#[derive(Debug, Clone)]
pub struct KanikoRig {
    /// The Docker engine builds run on (`unix:///...`).
    pub docker_host: String,
    /// Used when a pod has no `S3_ENDPOINT` (an S3 context on moto needs one).
    pub s3_endpoint: Option<String>,
    /// Azure Blob contexts are read from azurite (its well-known account).
    pub azurite: bool,
    /// `gs://` contexts are read from this GCS (the GCP fake's base URL),
    /// with a token the mounted key's `token_uri` grants, as kaniko's
    /// Google client gets one.
    pub gcs_endpoint: Option<String>,
    /// `Some`: each build, once its pod runs and has said its first line,
    /// waits for a permit (a test holds a build Job in place this way).
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
}

/// Largest context the fake fetches.
const MAX_CONTEXT: usize = 256 << 20;

/// Whether `job`'s first container is a kaniko executor.
pub(super) fn is_kaniko(job: &Value) -> bool {
    let args = &job["spec"]["template"]["spec"]["containers"][0]["args"];
    let has = |p: &str| args.as_array().is_some_and(|a| a.iter().any(|x| x.as_str().is_some_and(|s| s.starts_with(p))));
    has("--context=") && has("--destination=")
}

fn arg<'a>(c: &'a Value, name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    c["args"].as_array()?.iter().filter_map(Value::as_str).find_map(|a| a.strip_prefix(&prefix))
}

/// The shape Liftoff's kaniko Job must have; the problems found.
fn shape_problems(job: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let spec = &job["spec"];
    let pod = &spec["template"]["spec"];
    let c = &pod["containers"][0];
    if pod["containers"].as_array().map_or(0, Vec::len) != 1 {
        p.push("a kaniko Job has one container".into());
    }
    for a in ["context", "dockerfile", "destination"] {
        if arg(c, a).is_none() {
            p.push(format!("the executor has no --{a}"));
        }
    }
    if spec["backoffLimit"] != 0 {
        p.push(format!("backoffLimit is {}, not 0", spec["backoffLimit"]));
    }
    if spec["activeDeadlineSeconds"].as_i64().is_none_or(|d| d <= 0) {
        p.push("no activeDeadlineSeconds".into());
    }
    if pod["restartPolicy"] != "Never" {
        p.push("restartPolicy is not Never".into());
    }
    if c["securityContext"]["allowPrivilegeEscalation"] != false {
        p.push("allowPrivilegeEscalation is not false".into());
    }
    p
}

/// The mounted file at `dir/file` in container `c`: from a Secret volume.
fn mounted(
    s: &super::Store,
    ns: &str,
    pod: &Value,
    c: &Value,
    dir: &str,
    file: &str,
) -> Result<Option<String>, String> {
    let Some(m) = c["volumeMounts"].as_array().into_iter().flatten().find(|m| m["mountPath"] == dir) else {
        return Ok(None);
    };
    let vol = pod["spec"]["volumes"].as_array().into_iter().flatten().find(|v| v["name"] == m["name"]);
    let Some(secret) = vol.and_then(|v| v["secret"]["secretName"].as_str()) else {
        return Err(format!("volume {} is not a Secret", m["name"]));
    };
    let items = &vol.unwrap()["secret"]["items"];
    let key = match items.as_array() {
        Some(items) => items.iter().find(|i| i["path"] == file).and_then(|i| i["key"].as_str()),
        None => Some(file),
    };
    let Some(key) = key else { return Ok(None) };
    secret_value(s, ns, secret, key).map(Some)
}

fn secret_value(s: &super::Store, ns: &str, name: &str, key: &str) -> Result<String, String> {
    let secret = s
        .objects
        .get(&(Res::secrets(), ns.to_string(), name.to_string()))
        .ok_or_else(|| format!("secret \"{name}\" not found"))?;
    let b64 = secret["data"][key].as_str().ok_or_else(|| format!("couldn't find key {key} in Secret {ns}/{name}"))?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

/// What the pod's build needs, read from the store at its start.
struct Build {
    context: String,
    dockerfile: String,
    destination: String,
    env: BTreeMap<String, String>,
    aws_credentials: Option<String>,
    /// The service-account key mounted for `GOOGLE_APPLICATION_CREDENTIALS`.
    gcp_key: Option<String>,
    docker_config: Option<String>,
}

fn read_build(s: &super::Store, ns: &str, pod: &Value) -> Result<Build, String> {
    let c = &pod["spec"]["containers"][0];
    let mut env = BTreeMap::new();
    for e in c["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or_default().to_string();
        let value = match e["value"].as_str() {
            Some(v) => v.to_string(),
            None => {
                let r = &e["valueFrom"]["secretKeyRef"];
                secret_value(s, ns, r["name"].as_str().unwrap_or_default(), r["key"].as_str().unwrap_or_default())?
            }
        };
        env.insert(name, value);
    }
    Ok(Build {
        context: arg(c, "context").unwrap_or_default().to_string(),
        dockerfile: arg(c, "dockerfile").unwrap_or_default().to_string(),
        destination: arg(c, "destination").unwrap_or_default().to_string(),
        env,
        aws_credentials: mounted(s, ns, pod, c, "/root/.aws", "credentials")?,
        gcp_key: mounted(s, ns, pod, c, "/kaniko/.config/gcloud", "config.json")?,
        docker_config: mounted(s, ns, pod, c, "/kaniko/.docker", "config.json")?,
    })
}

/// `aws_access_key_id` and `aws_secret_access_key` of an AWS credentials file's `[default]`.
fn aws_keys(file: &str) -> Option<(String, String)> {
    let mut section = String::new();
    let (mut id, mut secret) = (None, None);
    for line in file.lines().map(str::trim) {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.trim().to_string();
        } else if section == "default"
            && let Some((k, v)) = line.split_once('=')
        {
            match k.trim() {
                "aws_access_key_id" => id = Some(v.trim().to_string()),
                "aws_secret_access_key" => secret = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    Some((id?, secret?))
}

/// Fetches the context object named by `--context`.
async fn fetch_context(rig: &KanikoRig, b: &Build) -> Result<bytes::Bytes, String> {
    use object_store::ObjectStoreExt;
    use object_store::path::Path;
    let (store, key): (Box<dyn object_store::ObjectStore>, String) = if let Some(rest) = b.context.strip_prefix("s3://")
    {
        let (bucket, key) = rest.split_once('/').ok_or("--context names no object")?;
        let endpoint = b.env.get("S3_ENDPOINT").cloned().or(rig.s3_endpoint.clone()).ok_or(
            "no S3_ENDPOINT in the pod and none given to the fake: it reads S3 contexts from an emulator only",
        )?;
        let (id, secret) = match &b.aws_credentials {
            Some(f) => aws_keys(f).ok_or("the credentials mounted at /root/.aws have no [default] keys")?,
            None => ("testing".into(), "testing".into()),
        };
        let s = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(b.env.get("AWS_REGION").map_or("us-east-1", String::as_str))
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_access_key_id(id)
            .with_secret_access_key(secret)
            .build()
            .map_err(|e| e.to_string())?;
        (Box::new(s), key.to_string())
    } else if let Some(rest) = b.context.strip_prefix("https://") {
        let (host, path) = rest.split_once('/').ok_or("--context names no object")?;
        let account = host.strip_suffix(".blob.core.windows.net").ok_or("not an Azure Blob URL")?;
        let (container, key) = path.split_once('/').ok_or("--context names no object")?;
        if !rig.azurite {
            return Err("the fake reads Azure Blob contexts from azurite only".into());
        }
        let access_key = b.env.get("AZURE_STORAGE_ACCESS_KEY").ok_or("no AZURE_STORAGE_ACCESS_KEY in the pod")?;
        let s = object_store::azure::MicrosoftAzureBuilder::new()
            .with_use_emulator(true)
            .with_account(account)
            .with_access_key(access_key)
            .with_container_name(container)
            .build()
            .map_err(|e| e.to_string())?;
        (Box::new(s), key.to_string())
    } else if let Some(rest) = b.context.strip_prefix("gs://") {
        let (bucket, key) = rest.split_once('/').ok_or("--context names no object")?;
        return gcs_object(rig, b, bucket, key).await;
    } else {
        return Err(format!("the fake reads s3://, gs:// and Azure Blob contexts, not {}", b.context));
    };
    let path = Path::parse(&key).map_err(|e| e.to_string())?;
    let meta = store.head(&path).await.map_err(|e| format!("context object {}: {e}", b.context))?;
    if meta.size > MAX_CONTEXT as u64 {
        return Err(format!("context object {} is {} bytes, over the fake's {MAX_CONTEXT}", b.context, meta.size));
    }
    store.get(&path).await.map_err(|e| e.to_string())?.bytes().await.map_err(|e| e.to_string())
}

/// A `gs://` context as kaniko's Google client reads it: a token from the
/// mounted service-account key's `token_uri` (an RS256 JWT bearer grant),
/// then the object from the GCS endpoint. By hand: object_store signs its
/// own JWTs for a key and asks no token endpoint, which is not what kaniko
/// does (nor what the GCP fake checks).
async fn gcs_object(rig: &KanikoRig, b: &Build, bucket: &str, key: &str) -> Result<bytes::Bytes, String> {
    let endpoint = rig
        .gcs_endpoint
        .as_deref()
        .ok_or("the fake was given no GCS endpoint: it reads gs:// from the GCP fake only")?;
    if b.env.get("GOOGLE_APPLICATION_CREDENTIALS").map(String::as_str) != Some("/kaniko/.config/gcloud/config.json") {
        return Err(
            "GOOGLE_APPLICATION_CREDENTIALS does not name the mounted key (workload identity is not modelled)".into()
        );
    }
    let key_json = b.gcp_key.as_deref().ok_or("no service-account key is mounted at /kaniko/.config/gcloud")?;
    let sa: Value = serde_json::from_str(key_json).map_err(|e| format!("the mounted key is not JSON: {e}"))?;
    let field = |f: &str| sa[f].as_str().ok_or_else(|| format!("the mounted key has no {f}"));
    let (email, pem, token_uri) = (field("client_email")?, field("private_key")?, field("token_uri")?);
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(der).map_err(|e| format!("private_key: {e}"))?;
    let pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("private_key: {e}"))?;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = b64(serde_json::json!({"alg": "RS256", "typ": "JWT"}).to_string().as_bytes());
    let claims = serde_json::json!({"iss": email, "aud": token_uri, "iat": now, "exp": now + 3600,
        "scope": "https://www.googleapis.com/auth/cloud-platform"});
    let signed = format!("{header}.{}", b64(claims.to_string().as_bytes()));
    let mut sig = vec![0; pair.public_modulus_len()];
    let rng = aws_lc_rs::rand::SystemRandom::new();
    pair.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, signed.as_bytes(), &mut sig).map_err(|e| e.to_string())?;
    let assertion = format!("{signed}.{}", b64(&sig));
    let http = reqwest::Client::new();
    let form = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_str())];
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let resp = http
        .post(token_uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("token endpoint {token_uri}: {e}"))?;
    let status = resp.status();
    let granted: Value = resp.json().await.map_err(|e| format!("token endpoint {token_uri}: {e}"))?;
    let token = granted["access_token"]
        .as_str()
        .ok_or_else(|| format!("token endpoint {token_uri} said {status}: {granted}"))?;
    let url = format!("{}/{bucket}/{key}", endpoint.trim_end_matches('/'));
    let mut resp = http.get(&url).bearer_auth(token).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("context object {}: GCS answered {}", b.context, resp.status()));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if out.len() + chunk.len() > MAX_CONTEXT {
            return Err(format!("context object {} is over the fake's {MAX_CONTEXT} bytes", b.context));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.into())
}

/// The docker config's logins, by registry host.
fn logins(config: Option<&str>) -> HashMap<String, bollard::auth::DockerCredentials> {
    let mut out = HashMap::new();
    let Some(v) = config.and_then(|c| serde_json::from_str::<Value>(c).ok()) else { return out };
    for (host, e) in v["auths"].as_object().into_iter().flatten() {
        let mut cred = bollard::auth::DockerCredentials { serveraddress: Some(host.clone()), ..Default::default() };
        if let Some(pair) = e["auth"].as_str().and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok()) {
            let pair = String::from_utf8_lossy(&pair).to_string();
            if let Some((u, p)) = pair.split_once(':') {
                cred.username = Some(u.into());
                cred.password = Some(p.into());
            }
        }
        cred.identitytoken = e["identitytoken"].as_str().map(str::to_string);
        out.insert(host.clone(), cred);
    }
    out
}

/// Starts the executor for `pod` (of a kaniko Job) in the background.
pub(super) fn start(shared: &Arc<Shared>, rig: KanikoRig, ns: String, pod: String, job: Value) {
    let shared = shared.clone();
    tokio::spawn(async move {
        if let Err(e) = run(&shared, &rig, &ns, &pod, &job).await {
            let _ = shared.set_pod(&ns, &pod, PodState::Running);
            let _ = shared.emit(&ns, &pod, None, vec![format!("error building image: {e}")]);
            let _ = shared.set_pod(&ns, &pod, PodState::Failed { exit_code: 1, reason: "Error".into() });
        }
    });
}

async fn run(shared: &Arc<Shared>, rig: &KanikoRig, ns: &str, pod_name: &str, job: &Value) -> Result<(), String> {
    let problems = shape_problems(job);
    if !problems.is_empty() {
        return Err(format!("kube-fake: not the kaniko Job Liftoff makes: {}", problems.join("; ")));
    }
    let build = {
        let s = shared.store.lock().unwrap();
        let pod =
            s.objects.get(&(Res::pods(), ns.to_string(), pod_name.to_string())).cloned().ok_or("the pod is gone")?;
        read_build(&s, ns, &pod)
    };
    let build = match build {
        Ok(b) => b,
        Err(missing) => {
            // as a kubelet: the container cannot be made, the pod waits
            let _ = shared.set_pod(
                ns,
                pod_name,
                PodState::Pending { reason: "CreateContainerConfigError".into(), message: missing },
            );
            return Ok(());
        }
    };
    let tgz = fetch_context(rig, &build).await?;
    shared.set_pod(ns, pod_name, PodState::Running)?;
    let say = |line: String| {
        let _ = shared.emit(ns, pod_name, None, vec![line]);
    };
    say(format!("INFO Retrieving image manifest; context {} ({} bytes)", build.context, tgz.len()));
    if let Some(gate) = &rig.gate {
        gate.acquire().await.map_err(|e| e.to_string())?.forget();
    }
    let docker = bollard::Docker::connect_with_unix(
        rig.docker_host.trim_start_matches("unix://"),
        300,
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(|e| e.to_string())?;
    let creds = logins(build.docker_config.as_deref());
    let options = bollard::query_parameters::BuildImageOptions {
        dockerfile: build.dockerfile.clone(),
        t: Some(build.destination.clone()),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(tgz) });
    let mut stream = docker.build_image(options, Some(creds.clone()), Some(bollard::body_try_stream(body)));
    let mut failure = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(info) => {
                if let Some(t) = info.stream.filter(|t| !t.trim().is_empty()) {
                    say(t.trim_end().to_string());
                }
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    failure = Some(e);
                }
            }
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    if let Some(f) = failure {
        let _ =
            docker.remove_image(&build.destination, None::<bollard::query_parameters::RemoveImageOptions>, None).await;
        return Err(f);
    }
    let (repo, tag) = build.destination.rsplit_once(':').ok_or("--destination has no tag")?;
    let host = repo.split('/').next().unwrap_or_default();
    let push_options = bollard::query_parameters::PushImageOptions { tag: Some(tag.to_string()), ..Default::default() };
    let mut push = docker.push_image(repo, Some(push_options), creds.get(host).cloned());
    let mut push_failure = None;
    while let Some(ev) = push.next().await {
        match ev {
            Ok(info) => {
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    push_failure = Some(e);
                }
            }
            Err(e) => push_failure = Some(e.to_string()),
        }
    }
    // the test engine keeps nothing of it: the registry has the image
    let _ = docker.remove_image(&build.destination, None::<bollard::query_parameters::RemoveImageOptions>, None).await;
    if let Some(f) = push_failure {
        return Err(format!("pushing {}: {f}", build.destination));
    }
    say(format!("INFO Pushed {}", build.destination));
    shared.set_pod(ns, pod_name, PodState::Succeeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_credentials_files_are_read_from_their_default_section() {
        let f = "[other]\naws_access_key_id = x\n[default]\naws_access_key_id = AKIA\naws_secret_access_key = s3cr3t\n";
        assert_eq!(aws_keys(f), Some(("AKIA".into(), "s3cr3t".into())));
        assert_eq!(aws_keys("[other]\naws_access_key_id = x\n"), None);
    }
}
