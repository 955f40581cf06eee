//! [`write_docker_config`]: a docker client config directory with a login
//! for one registry, as `docker login` writes it, for tests that give an
//! agent or a registry client its credentials.

use base64::Engine;
use std::path::Path;

/// Creates `dir` (if needed) and writes `dir/config.json` whose `auths`
/// holds `user:password` for `host` (`None`: no entry at all).
pub fn write_docker_config(dir: &Path, host: &str, login: Option<(&str, &str)>) {
    let auths = match login {
        Some((user, password)) => {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            serde_json::json!({ host: { "auth": auth } })
        }
        None => serde_json::json!({}),
    };
    std::fs::create_dir_all(dir).expect("create the docker config directory");
    std::fs::write(dir.join("config.json"), serde_json::json!({ "auths": auths }).to_string())
        .expect("write config.json");
}
