//! The append for images that stay in the agent's engine (no registry):
//! the appended image is loaded through the Engine API's `POST
//! /images/load` as a `docker save` archive that holds only the new layer.
//! The engine loads a layer file only when it lacks that layer (it looks
//! each layer chain up before opening its file), and it has every layer of
//! the dependency image, so the archive's other layer paths are never read.
//!
//! The engine does not give an image's config as stored, so it is rebuilt
//! from its inspection: architecture, os, variant, created, author, the
//! runtime config and the diff ids as they are; the history from
//! `/images/{name}/history` with the lines of zero-sized steps marked
//! empty (the engine reports no other mark), without their times. So the
//! same content gives the same image id here too, but the history lines
//! may differ from the dependency image's in their `empty_layer` marks.

use super::{AppendError, CodeLayer, appended_config, labels};
use bollard::Docker;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Appends `layer` to `dependencies` in the engine and tags the result
/// `image` (`repo:tag`); returns the new image's id.
pub async fn append_in_engine(
    docker: &Docker,
    dependencies: &str,
    image: &str,
    layer: &CodeLayer,
    entrypoint: &[String],
    context_digest: &str,
) -> Result<String, AppendError> {
    let bad = |message: String| AppendError::Dependencies { reference: dependencies.to_string(), message };
    let inspect = docker.inspect_image(dependencies).await.map_err(|e| bad(format!("cannot inspect it: {e}")))?;
    let history = docker.image_history(dependencies).await.map_err(|e| bad(format!("cannot read its history: {e}")))?;
    let inspect = serde_json::to_value(&inspect).map_err(|e| bad(e.to_string()))?;
    let id = inspect.get("Id").and_then(Value::as_str).unwrap_or_default().to_string();
    let diff_ids =
        inspect.pointer("/RootFS/Layers").cloned().ok_or_else(|| bad("its inspection has no layers".into()))?;
    let layers = diff_ids.as_array().map_or(0, Vec::len);
    // newest first from the engine: oldest first in a config
    let mut lines: Vec<Value> = history
        .iter()
        .rev()
        .map(|h| {
            let mut line = serde_json::Map::new();
            line.insert("created_by".into(), json!(h.created_by));
            if !h.comment.is_empty() {
                line.insert("comment".into(), json!(h.comment));
            }
            if h.size == 0 {
                line.insert("empty_layer".into(), json!(true));
            }
            Value::Object(line)
        })
        .collect();
    // a history with more non-empty lines than layers is refused by the engine: leave it out
    if lines.iter().filter(|l| l.get("empty_layer").is_none()).count() > layers {
        lines.clear();
    }
    let mut base = serde_json::Map::new();
    for (from, to) in [
        ("Architecture", "architecture"),
        ("Os", "os"),
        ("Variant", "variant"),
        ("Created", "created"),
        ("Author", "author"),
    ] {
        if let Some(v) = inspect.get(from).filter(|v| !v.is_null() && v.as_str() != Some("")) {
            base.insert(to.into(), v.clone());
        }
    }
    base.insert("config".into(), inspect.get("Config").cloned().unwrap_or_else(|| json!({})));
    base.insert("rootfs".into(), json!({"type": "layers", "diff_ids": diff_ids}));
    base.insert("history".into(), Value::Array(lines));
    let base = serde_json::to_vec(&Value::Object(base)).map_err(|e| bad(e.to_string()))?;
    let labels = labels(&format!("{dependencies}@{id}"), context_digest);
    let config = appended_config(&base, &layer.diff_id, entrypoint, &labels).map_err(bad)?;
    let config_id = hex::encode(Sha256::digest(&config));
    let archive = save_archive(&config, &config_id, image, &diff_ids, layer).map_err(|e| bad(e.to_string()))?;

    let options = bollard::query_parameters::ImportImageOptions { quiet: true, ..Default::default() };
    let mut stream = docker.import_image(options, bollard::body_full(archive), None);
    while let Some(event) = stream.next().await {
        let event = event.map_err(|e| AppendError::Engine(format!("loading {image} into the engine failed: {e}")))?;
        if let Some(message) = event.error_detail.and_then(|d| d.message) {
            return Err(AppendError::Engine(format!("loading {image} into the engine failed: {message}")));
        }
    }
    Ok(format!("sha256:{config_id}"))
}

/// A `docker save` archive: `manifest.json`, the config, and the one new
/// layer (the dependency image's layers are named, not included).
fn save_archive(
    config: &[u8],
    config_id: &str,
    image: &str,
    diff_ids: &Value,
    layer: &CodeLayer,
) -> std::io::Result<Bytes> {
    let new_layer = format!("{}/layer.tar", layer.diff_id.trim_start_matches("sha256:"));
    let mut layer_paths: Vec<String> = diff_ids
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|d| format!("{}/layer.tar", d.trim_start_matches("sha256:")))
        .collect();
    layer_paths.push(new_layer.clone());
    let manifest = serde_json::to_vec(
        &json!([{"Config": format!("{config_id}.json"), "RepoTags": [image], "Layers": layer_paths}]),
    )?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, data)
    };
    add("manifest.json", &manifest)?;
    add(&format!("{config_id}.json"), config)?;
    // the engine takes a compressed layer file as well
    add(&new_layer, &layer.gzip)?;
    Ok(Bytes::from(tar.into_inner()?))
}
