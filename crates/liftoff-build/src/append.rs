//! Instant images: a job's code appended as one layer to its dependency
//! image, through the Distribution API, with no builder run (as Jib and ko
//! do for the JVM and Go). The layer is what the generated Dockerfile's
//! last `COPY` makes ([`BuildContext::write_code_layer`]); the config is the
//! dependency image's with the layer's diff id, its history lines, the
//! entrypoint (which clears an inherited `Cmd`, as `ENTRYPOINT` does) and
//! Liftoff's labels. Nothing in it depends on the time or the machine, so
//! the same content gives the same manifest digest (`created` stays the
//! dependency image's).
//!
//! Images that stay in the agent's engine are loaded into it instead
//! (`engine.rs`).
//!
//! Only what the registry lacks is uploaded (blob HEAD first), and the
//! manifest last: an append cut between the two leaves blobs that the next
//! attempt finds and does not send again. Blobs go up in one piece (POST,
//! then a monolithic PUT), which every registry takes: no chunked upload and
//! no cross-repository mount is needed, since the dependency image lives in
//! the same repository.

mod engine;

pub use engine::append_in_engine;

use crate::context::{BuildContext, ContextError};
use crate::registry::{Manifest, Registry, RegistryError};
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;

/// The most read of an image's config.
pub const CONFIG_LIMIT: usize = 8 << 20;

/// The tags of dependency images start with this (`lf-deps-<hex>`); code
/// images' tags are `lf-<hex>`.
pub const DEPENDENCY_TAG_PREFIX: &str = "lf-deps-";
/// The label naming the dependency image an appended image is made from.
pub const DEPENDENCIES_LABEL: &str = "dev.liftoff.dependencies";
/// The label holding the digest of the build context the code layer came from.
pub const CONTEXT_LABEL: &str = "dev.liftoff.context";
/// What the appended layer's history line says.
pub const LAYER_HISTORY: &str = "COPY --chown=1000:0 src/ /home/liftoff # liftoff: code layer appended";

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The code as a compressed layer.
#[derive(Clone)]
pub struct CodeLayer {
    /// `sha256:` of the uncompressed tar: the config's diff id.
    pub diff_id: String,
    /// `sha256:` of `gzip`: the blob's digest.
    pub digest: String,
    pub gzip: Bytes,
    /// Size of the uncompressed tar.
    pub tar_bytes: u64,
}

/// Makes the code layer of `context` (a blocking call: it reads the files).
/// gzip with no name and time 0 in its header: the same files give the same bytes.
pub fn code_layer(context: &BuildContext) -> Result<CodeLayer, ContextError> {
    struct Tee {
        diff: Sha256,
        gz: GzEncoder<Vec<u8>>,
    }
    impl Write for Tee {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.diff.update(buf);
            self.gz.write_all(buf)?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.gz.flush()
        }
    }
    let mut tee = Tee { diff: Sha256::new(), gz: GzEncoder::new(Vec::new(), Compression::default()) };
    let tar_bytes = context.write_code_layer(&mut tee)?;
    let gzip = tee
        .gz
        .finish()
        .map_err(|source| ContextError::Io { context: "failed to compress the code layer".into(), source })?;
    Ok(CodeLayer {
        diff_id: format!("sha256:{}", hex::encode(tee.diff.finalize())),
        digest: format!("sha256:{}", hex::encode(Sha256::digest(&gzip))),
        gzip: Bytes::from(gzip),
        tar_bytes,
    })
}

/// What an append needs.
pub struct AppendRequest<'a> {
    /// The dependency image's tag in the registry's repository.
    pub dependencies: &'a str,
    /// The tag the appended image gets.
    pub tag: &'a str,
    pub layer: &'a CodeLayer,
    /// The job's command: the image's `Entrypoint`.
    pub entrypoint: &'a [String],
    /// The build context's digest, for the [`CONTEXT_LABEL`].
    pub context_digest: &'a str,
}

/// What an append did.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The new manifest's digest.
    pub digest: String,
    /// The dependency image's manifest digest.
    pub dependencies_digest: String,
    /// Whether each blob had to be uploaded (`false`: the registry had it).
    pub layer_uploaded: bool,
    pub config_uploaded: bool,
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The dependency image is not one this code can extend.
    #[error("the dependency image {reference}: {message}")]
    Dependencies { reference: String, message: String },
    /// The engine refused the appended image.
    #[error("{0}")]
    Engine(String),
}

/// The labels an appended image gets: its dependency image
/// (`reference@digest`) and its build context's digest.
fn labels(dependencies: &str, context_digest: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (DEPENDENCIES_LABEL.to_string(), dependencies.to_string()),
        (CONTEXT_LABEL.to_string(), context_digest.to_string()),
    ])
}

/// Appends `req.layer` to the dependency image in `registry` and tags the
/// result `req.tag`.
pub async fn append(registry: &dyn Registry, req: &AppendRequest<'_>) -> Result<Appended, AppendError> {
    let bad = |message: String| AppendError::Dependencies { reference: req.dependencies.to_string(), message };
    let base = registry
        .manifest(req.dependencies)
        .await?
        .ok_or_else(|| bad(format!("not found in {}", registry.describe())))?;
    let manifest: Value =
        serde_json::from_slice(&base.bytes).map_err(|e| bad(format!("its manifest is not JSON: {e}")))?;
    let config_digest = manifest
        .pointer("/config/digest")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("its manifest names no config (an index? only single-platform images are extended)".into()))?
        .to_string();
    let config = registry.blob(&config_digest, CONFIG_LIMIT).await?;
    let labels = labels(&format!("{}@{}", req.dependencies, base.digest), req.context_digest);
    let new_config = appended_config(&config, &req.layer.diff_id, req.entrypoint, &labels).map_err(bad)?;
    let new_config_digest = format!("sha256:{}", hex::encode(Sha256::digest(&new_config)));
    let (media_type, new_manifest) =
        appended_manifest(&base, &new_config_digest, new_config.len(), &req.layer.digest, req.layer.gzip.len())
            .map_err(bad)?;

    let layer_uploaded = !registry.has_blob(&req.layer.digest).await?;
    if layer_uploaded {
        registry.put_blob(&req.layer.digest, req.layer.gzip.clone()).await?;
    }
    let config_uploaded = !registry.has_blob(&new_config_digest).await?;
    if config_uploaded {
        registry.put_blob(&new_config_digest, Bytes::from(new_config)).await?;
    }
    let digest = registry.put_manifest(req.tag, &media_type, Bytes::from(new_manifest)).await?;
    Ok(Appended { digest, dependencies_digest: base.digest, layer_uploaded, config_uploaded })
}

/// The dependency image's config with the code layer on top: its diff id
/// appended, a history line for it and one for the entrypoint, the
/// entrypoint set and `Cmd` cleared (a Dockerfile's `ENTRYPOINT` clears an
/// inherited `CMD`), `labels` added. Serialised compactly with sorted keys.
pub fn appended_config(
    base: &[u8],
    diff_id: &str,
    entrypoint: &[String],
    labels: &BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    let mut config: Value = serde_json::from_slice(base).map_err(|e| format!("its config is not JSON: {e}"))?;
    let root = config.as_object_mut().ok_or("its config is not an object")?;
    let created = root.get("created").cloned().unwrap_or(Value::Null);
    let diff_ids = root
        .get_mut("rootfs")
        .and_then(|r| r.get_mut("diff_ids"))
        .and_then(Value::as_array_mut)
        .ok_or("its config has no rootfs.diff_ids")?;
    diff_ids.push(Value::String(diff_id.to_string()));
    let history = root.entry("history").or_insert_with(|| json!([]));
    let history = history.as_array_mut().ok_or("its config's history is not a list")?;
    let mut line = |created_by: String, empty: bool| {
        let mut h = serde_json::Map::new();
        if !created.is_null() {
            h.insert("created".into(), created.clone());
        }
        h.insert("created_by".into(), Value::String(created_by));
        if empty {
            h.insert("empty_layer".into(), Value::Bool(true));
        }
        history.push(Value::Object(h));
    };
    line(LAYER_HISTORY.to_string(), false);
    line(crate::dockerfile::entrypoint_line(entrypoint).trim_end().to_string(), true);
    let run = root.entry("config").or_insert_with(|| json!({}));
    let run = run.as_object_mut().ok_or("its config's config is not an object")?;
    run.insert("Entrypoint".into(), json!(entrypoint));
    run.insert("Cmd".into(), Value::Null);
    let image_labels = run.entry("Labels").or_insert_with(|| json!({}));
    if image_labels.is_null() {
        *image_labels = json!({});
    }
    let image_labels = image_labels.as_object_mut().ok_or("its config's labels are not an object")?;
    for (k, v) in labels {
        image_labels.insert(k.clone(), Value::String(v.clone()));
    }
    serde_json::to_vec(&config).map_err(|e| e.to_string())
}

/// The dependency image's manifest with the new config and the layer
/// appended, in the same format (Docker schema 2 or OCI). Returns its media
/// type and bytes.
pub fn appended_manifest(
    base: &Manifest,
    config_digest: &str,
    config_size: usize,
    layer_digest: &str,
    layer_size: usize,
) -> Result<(String, Vec<u8>), String> {
    let mut m: Value = serde_json::from_slice(&base.bytes).map_err(|e| format!("its manifest is not JSON: {e}"))?;
    let media_type =
        m.get("mediaType").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| base.media_type.clone());
    let layer_type = match media_type.as_str() {
        DOCKER_MANIFEST => DOCKER_LAYER,
        OCI_MANIFEST => OCI_LAYER,
        other => return Err(format!("its manifest is a '{other}', not a single-platform image manifest")),
    };
    let root = m.as_object_mut().ok_or("its manifest is not an object")?;
    let config = root.get_mut("config").and_then(Value::as_object_mut).ok_or("its manifest has no config")?;
    config.insert("digest".into(), json!(config_digest));
    config.insert("size".into(), json!(config_size));
    let layers = root.get_mut("layers").and_then(Value::as_array_mut).ok_or("its manifest has no layers")?;
    layers.push(json!({"mediaType": layer_type, "size": layer_size, "digest": layer_digest}));
    // the manifest's annotations (if any) describe the dependency image, not this one
    root.remove("annotations");
    Ok((media_type, serde_json::to_vec(&m).map_err(|e| e.to_string())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base_config() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/env/bin:/usr/bin"], "Cmd": ["python3"], "User": "1000", "WorkingDir": "/home/liftoff", "Labels": null},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]},
            "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "RUN pip install"}]
        }))
        .unwrap()
    }

    #[test]
    fn the_config_gets_the_layer_the_entrypoint_and_the_labels_and_nothing_of_the_moment() {
        let labels = BTreeMap::from([("a".to_string(), "b".to_string())]);
        let ep = vec!["python".to_string(), "train.py".to_string()];
        let out = appended_config(&base_config(), "sha256:bb", &ep, &labels).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["rootfs"]["diff_ids"], json!(["sha256:aa", "sha256:bb"]));
        assert_eq!(v["config"]["Entrypoint"], json!(["python", "train.py"]));
        assert_eq!(v["config"]["Cmd"], Value::Null, "ENTRYPOINT clears an inherited CMD");
        assert_eq!(v["config"]["Env"], json!(["PATH=/env/bin:/usr/bin"]), "the environment is the dependency image's");
        assert_eq!(
            (v["config"]["User"].as_str(), v["config"]["WorkingDir"].as_str()),
            (Some("1000"), Some("/home/liftoff"))
        );
        assert_eq!(v["config"]["Labels"], json!({"a": "b"}));
        let history = v["history"].as_array().unwrap();
        assert_eq!(history.len(), 3);
        assert_eq!(history[1]["created_by"], json!(LAYER_HISTORY));
        assert!(history[1].get("empty_layer").is_none(), "the code line has a layer");
        assert_eq!(history[2]["empty_layer"], json!(true));
        assert_eq!(v["created"], json!("2026-01-01T00:00:00Z"), "created stays the dependency image's");
        // one non-empty history line per diff id: what `docker load` and registries check
        let non_empty = history.iter().filter(|h| h.get("empty_layer").is_none()).count();
        assert_eq!(non_empty, v["rootfs"]["diff_ids"].as_array().unwrap().len());
        assert_eq!(out, appended_config(&base_config(), "sha256:bb", &ep, &labels).unwrap(), "same input, same bytes");
        assert_ne!(out, appended_config(&base_config(), "sha256:cc", &ep, &labels).unwrap());
    }

    #[test]
    fn the_manifest_keeps_its_format_and_refuses_an_index() {
        let docker = Manifest {
            media_type: DOCKER_MANIFEST.into(),
            digest: "sha256:00".into(),
            bytes: serde_json::to_vec(&json!({
                "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": "sha256:c0"},
                "layers": [{"mediaType": DOCKER_LAYER, "size": 10, "digest": "sha256:l0"}]
            }))
            .unwrap(),
        };
        let (mt, bytes) = appended_manifest(&docker, "sha256:c1", 2, "sha256:l1", 20).unwrap();
        assert_eq!(mt, DOCKER_MANIFEST);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["config"]["digest"], json!("sha256:c1"));
        assert_eq!(v["config"]["size"], json!(2));
        assert_eq!(v["layers"][1], json!({"mediaType": DOCKER_LAYER, "size": 20, "digest": "sha256:l1"}));
        let oci = Manifest {
            media_type: OCI_MANIFEST.into(),
            digest: "sha256:01".into(),
            bytes: serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}, "layers": [], "annotations": {"x": "y"}})).unwrap(),
        };
        let (_, bytes) = appended_manifest(&oci, "sha256:c1", 2, "sha256:l1", 20).unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["layers"][0]["mediaType"], json!(OCI_LAYER));
        assert!(v.get("annotations").is_none());
        let index = Manifest {
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            digest: "sha256:02".into(),
            bytes: br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#
                .to_vec(),
        };
        let err = appended_manifest(&index, "sha256:c1", 2, "sha256:l1", 20).unwrap_err();
        assert!(err.contains("index"), "{err}");
    }
}
