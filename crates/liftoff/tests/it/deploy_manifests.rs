//! `deploy/`: the Kustomize base and each cloud's overlay, rendered by the
//! real `kubectl kustomize` and checked: the objects there, the agent's RBAC
//! exactly what `liftoff permissions --runner kubernetes` prints, probes on
//! routes that answer (the server's, and the agent's `--health-listen`
//! through a real agent), secrets mounted read-only as files, every flag
//! and variable one the binary knows, the image set, each overlay's
//! identity, and each launch config valid.

use crate::support;

use liftoff_testkit::component::required_env;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// The rendered objects of `deploy/<dir>`.
fn render(kubectl: &str, dir: &str) -> Vec<Value> {
    render_in(kubectl, &deploy_dir(), dir)
}

fn render_in(kubectl: &str, deploy: &Path, dir: &str) -> Vec<Value> {
    let out = Command::new(kubectl).arg("kustomize").arg(deploy.join(dir)).output().expect("run kubectl");
    assert!(out.status.success(), "kubectl kustomize {dir}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_saphyr::from_str_multiple::<Value, _>(&text).unwrap_or_else(|e| panic!("{dir}: rendered YAML: {e}"))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", kinds(objects)))
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = objects
        .iter()
        .map(|o| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap()))
        .collect();
    k.sort();
    k
}

fn container<'a>(objects: &'a [Value], deployment: &str) -> &'a Value {
    &find(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]
}

fn help(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = support::liftoff(dir.path(), args);
    assert!(out.status.success(), "liftoff {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The objects' RBAC as `liftoff permissions` prints them: without the namespace and labels kustomize adds.
fn bare(object: &Value) -> Value {
    json!({
        "apiVersion": object["apiVersion"],
        "kind": object["kind"],
        "metadata": {"name": object["metadata"]["name"]},
        "rules": object["rules"],
    })
}

struct Overlay {
    dir: &'static str,
    image: &'static str,
}

const OVERLAYS: &[Overlay] = &[
    Overlay { dir: "base", image: "ghcr.io/liftoff/liftoff:0.1.0" },
    Overlay { dir: "overlays/eks", image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/liftoff:0.1.0" },
    Overlay { dir: "overlays/gke", image: "us-central1-docker.pkg.dev/my-project/liftoff/liftoff:0.1.0" },
    Overlay { dir: "overlays/aks", image: "myregistry.azurecr.io/liftoff:0.1.0" },
    Overlay { dir: "overlays/coreweave", image: "registry.example.com/ml/liftoff:0.1.0" },
];

#[test]
fn every_overlay_renders_with_least_privilege_file_secrets_and_known_flags() {
    let Some(kubectl) = required_env("LIFTOFF_TEST_KUBECTL") else { return };
    let server_help = help(&["server", "--help"]);
    let agent_help = help(&["agent", "--help"]);
    for o in OVERLAYS {
        let objects = render(&kubectl, o.dir);
        let dir = o.dir;
        let mut expected = vec![
            "ClusterRole/liftoff-agent-adopt",
            "ClusterRoleBinding/liftoff-agent-adopt",
            "ConfigMap/liftoff-agent",
            "ConfigMap/liftoff-server",
            "Deployment/liftoff-agent",
            "Deployment/liftoff-server",
            "Namespace/liftoff",
            "Role/liftoff-agent",
            "RoleBinding/liftoff-agent",
            "Service/liftoff-server",
            "ServiceAccount/liftoff-agent",
            "ServiceAccount/liftoff-server",
        ];
        expected.sort();
        assert_eq!(kinds(&objects), expected, "{dir}");
        for obj in objects
            .iter()
            .filter(|o| !matches!(o["kind"].as_str(), Some("Namespace" | "ClusterRole" | "ClusterRoleBinding")))
        {
            assert_eq!(obj["metadata"]["namespace"], "liftoff", "{dir}: {obj}");
        }

        // RBAC: what `liftoff permissions` prints for this overlay's launch config, bound to the agent
        let config_text =
            find(&objects, "ConfigMap", "liftoff-agent")["data"]["launch-config.yaml"].as_str().unwrap().to_string();
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("launch-config.yaml");
        std::fs::write(&config, &config_text).unwrap();
        let checked = support::liftoff(tmp.path(), &["config", "check", &config.to_string_lossy()]);
        assert!(
            checked.status.success(),
            "{dir}: launch config invalid: {}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
        let printed = support::liftoff(
            tmp.path(),
            &["permissions", "-c", &config.to_string_lossy(), "--runner", "kubernetes", "--format", "json"],
        );
        assert!(printed.status.success(), "{dir}: {}", String::from_utf8_lossy(&printed.stderr));
        let printed: Value = serde_json::from_slice(&printed.stdout).unwrap();
        let rendered = vec![
            bare(find(&objects, "Role", "liftoff-agent")),
            bare(find(&objects, "ClusterRole", "liftoff-agent-adopt")),
        ];
        assert_eq!(printed["kubernetes"], Value::Array(rendered), "{dir}: the Role differs from `liftoff permissions`");
        for (binding, role_kind, role) in
            [("RoleBinding", "Role", "liftoff-agent"), ("ClusterRoleBinding", "ClusterRole", "liftoff-agent-adopt")]
        {
            let b = objects.iter().find(|x| x["kind"] == binding).unwrap();
            assert_eq!(
                b["roleRef"],
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}),
                "{dir}"
            );
            assert_eq!(
                b["subjects"],
                json!([{"kind": "ServiceAccount", "name": "liftoff-agent", "namespace": "liftoff"}]),
                "{dir}: {binding}"
            );
        }
        // nothing beyond the Role and the ClusterRole's list: no wildcard anywhere
        let rules = find(&objects, "Role", "liftoff-agent")["rules"].to_string()
            + &find(&objects, "ClusterRole", "liftoff-agent-adopt")["rules"].to_string();
        assert!(!rules.contains('*'), "{dir}: {rules}");

        for (deployment, sa, help_text) in
            [("liftoff-server", "liftoff-server", &server_help), ("liftoff-agent", "liftoff-agent", &agent_help)]
        {
            let d = find(&objects, "Deployment", deployment);
            let pod = &d["spec"]["template"]["spec"];
            assert_eq!(pod["serviceAccountName"], sa, "{dir}");
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{dir}");
            let c = container(&objects, deployment);
            assert_eq!(c["image"], o.image, "{dir}: {deployment}'s image");
            assert!(
                c["resources"]["requests"]["cpu"].is_string() && c["resources"]["limits"]["memory"].is_string(),
                "{dir}"
            );
            for probe in ["readinessProbe", "livenessProbe"] {
                assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{dir}: {deployment} {probe}");
                let port = &c[probe]["httpGet"]["port"];
                assert!(
                    c["ports"].as_array().unwrap().iter().any(|p| &p["name"] == port),
                    "{dir}: {deployment} {probe} port {port} is not a named port"
                );
            }
            // flags and variables the binary knows
            let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
            for flag in args.iter().filter(|a| a.starts_with("--")) {
                let name = flag.split('=').next().unwrap();
                assert!(
                    help_text.contains(&format!("{name} ")),
                    "{dir}: {deployment} uses {name}, unknown to `liftoff {} --help`",
                    args[0]
                );
            }
            let volumes = pod["volumes"].as_array().unwrap();
            let mounts = c["volumeMounts"].as_array().unwrap();
            for env in c["env"].as_array().unwrap() {
                let name = env["name"].as_str().unwrap();
                if name.starts_with("LIFTOFF_") {
                    assert!(
                        help_text.contains(&format!("[env: {name}")),
                        "{dir}: {deployment} sets {name}, unknown to the binary"
                    );
                }
                if env["valueFrom"]["secretKeyRef"].is_object() {
                    // object_store reads the S3 keys from the environment only
                    assert!(
                        dir == "overlays/coreweave" && name.starts_with("AWS_"),
                        "{dir}: secret {name} in the environment, not a file"
                    );
                }
                // a *_FILE variable names a file in a read-only secret mount
                if name.ends_with("_FILE") {
                    let path = env["value"].as_str().unwrap();
                    let mount = mounts
                        .iter()
                        .find(|m| path.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap())))
                        .unwrap_or_else(|| panic!("{dir}: {name}={path} is in no mount"));
                    assert_eq!(mount["readOnly"], true, "{dir}: {name}");
                    let volume = volumes.iter().find(|v| v["name"] == mount["name"]).unwrap();
                    assert!(volume["secret"]["secretName"].is_string(), "{dir}: {name} is not from a Secret");
                    assert_eq!(volume["secret"]["defaultMode"], 0o400, "{dir}: {name}'s mode");
                }
            }
        }
        let server = find(&objects, "Deployment", "liftoff-server");
        assert!(server["spec"]["replicas"].as_u64().unwrap() >= 2, "{dir}: several server replicas");
        let agent = find(&objects, "Deployment", "liftoff-agent");
        assert_eq!(agent["spec"]["strategy"]["type"], "Recreate", "{dir}: one agent per agent key at a time");

        // each cloud's identity
        let sa = |name: &str| find(&objects, "ServiceAccount", name)["metadata"]["annotations"].clone();
        match dir {
            "overlays/eks" => {
                assert!(
                    sa("liftoff-agent")["eks.amazonaws.com/role-arn"]
                        .as_str()
                        .unwrap()
                        .ends_with(":role/liftoff-agent")
                );
                assert!(config_text.contains("type: aws"));
            }
            "overlays/gke" => {
                assert!(
                    sa("liftoff-agent")["iam.gke.io/gcp-service-account"]
                        .as_str()
                        .unwrap()
                        .starts_with("liftoff-agent@")
                );
                assert!(config_text.contains("type: gcp"));
            }
            "overlays/aks" => {
                assert!(sa("liftoff-agent")["azure.workload.identity/client-id"].is_string());
                let labels = &agent["spec"]["template"]["metadata"]["labels"];
                assert_eq!(labels["azure.workload.identity/use"], "true");
                assert!(config_text.contains("type: azure"));
            }
            "overlays/coreweave" => {
                assert!(sa("liftoff-agent").is_null(), "no cloud identity");
                assert!(config_text.contains("secret-name:") && config_text.contains("secret-key:"));
                assert!(sa("liftoff-server").is_null());
            }
            _ => {}
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// `components/server-tls` on an overlay: the server reads its certificate
/// from a TLS Secret's files through variables it knows, the probes use
/// HTTPS, the agent calls the server over https.
#[test]
fn the_server_tls_component_mounts_the_certificate_and_probes_over_https() {
    let Some(kubectl) = required_env("LIFTOFF_TEST_KUBECTL") else { return };
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&deploy_dir(), copy.path());
    std::fs::create_dir(copy.path().join("overlays/eks-tls")).unwrap();
    std::fs::write(
        copy.path().join("overlays/eks-tls/kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../eks]\ncomponents: [../../components/server-tls]\n",
    )
    .unwrap();
    let objects = render_in(&kubectl, copy.path(), "overlays/eks-tls");
    let server_help = help(&["server", "--help"]);
    let c = container(&objects, "liftoff-server");
    let env = |name: &str| {
        c["env"].as_array().unwrap().iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("no {name}"))["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (var, file) in [("LIFTOFF_TLS_CERT", "tls.crt"), ("LIFTOFF_TLS_KEY", "tls.key")] {
        assert!(server_help.contains(&format!("[env: {var}")), "{var} unknown to the binary");
        assert_eq!(env(var), format!("/var/run/secrets/liftoff-tls/{file}"));
    }
    let pod = &find(&objects, "Deployment", "liftoff-server")["spec"]["template"]["spec"];
    let tls = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "tls").expect("the tls volume");
    assert_eq!(tls["secret"], json!({"secretName": "liftoff-server-tls", "defaultMode": 0o400}));
    assert!(c["volumeMounts"].as_array().unwrap().iter().any(|m| m["name"] == "tls" && m["readOnly"] == true));
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
    }
    let agent = container(&objects, "liftoff-agent");
    let base_url = agent["env"].as_array().unwrap().iter().find(|e| e["name"] == "LIFTOFF_BASE_URL").unwrap();
    assert_eq!(base_url["value"], "https://liftoff-server.liftoff.svc:7434");
    // the rest of the overlay is untouched
    assert_eq!(c["image"], "123456789012.dkr.ecr.us-east-1.amazonaws.com/liftoff:0.1.0");
}

/// The probes' routes answer on a real server and a real agent started with
/// the base manifests' flags and variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probes_answer_on_a_real_server_and_agent() {
    let Some(kubectl) = required_env("LIFTOFF_TEST_KUBECTL") else { return };
    let objects = render(&kubectl, "base");
    let dir = tempfile::tempdir().unwrap();

    // the server, with the files the manifest's variables name
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let admin = "lft_admin-key-from-a-kubernetes-secret-0123456789";
    std::fs::write(secrets.join("admin-key"), format!("{admin}\n")).unwrap();
    std::fs::write(secrets.join("metrics-token"), "scrape-token-0123456789\n").unwrap();
    std::fs::write(secrets.join("secrets-key"), "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n").unwrap();
    std::fs::write(secrets.join("database-url"), format!("sqlite://{}\n", dir.path().join("db.sqlite").display()))
        .unwrap();
    let server_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c = container(&objects, "liftoff-server");
    let mut server_cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_liftoff"));
    server_cmd.kill_on_drop(true).current_dir(dir.path());
    for a in c["args"].as_array().unwrap() {
        let a = a.as_str().unwrap();
        server_cmd.arg(match a {
            "0.0.0.0:7434" => format!("127.0.0.1:{server_port}"),
            "/var/lib/liftoff" => dir.path().join("data").display().to_string(),
            other => other.to_string(),
        });
    }
    for env in c["env"].as_array().unwrap() {
        let (name, value) = (env["name"].as_str().unwrap(), env["value"].as_str());
        let value = match (name, value) {
            (_, Some(v)) => v.replace("/var/run/secrets/liftoff", &secrets.display().to_string()),
            ("LIFTOFF_BLOB_STORE", None) => format!("file://{}", dir.path().join("blobs").display()),
            (other, None) => panic!("unexpected variable {other}"),
        };
        server_cmd.env(name, value);
    }
    let mut server = server_cmd.stdout(std::process::Stdio::null()).spawn().unwrap();
    let base = format!("http://127.0.0.1:{server_port}");
    for probe in ["readinessProbe", "livenessProbe"] {
        let path = c[probe]["httpGet"]["path"].as_str().unwrap();
        wait_ok(&format!("{base}{path}")).await;
    }
    // the admin key from the Secret works, and /metrics wants the token
    let client = liftoff_client::Client::new(&base, admin, "default").unwrap();
    assert_eq!(client.whoami().await.unwrap().role, "admin");
    assert_eq!(reqwest::get(format!("{base}/metrics")).await.unwrap().status(), 401);

    // the agent, with the base's launch config and an agent key in a 0440 file of its own group
    let agent_key = client.create_key("agent").await.unwrap().secret;
    let key_file = secrets.join("agent-key");
    std::fs::write(&key_file, &agent_key).unwrap();
    std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o440)).unwrap();
    let config = dir.path().join("etc");
    std::fs::create_dir(&config).unwrap();
    let config_text = find(&objects, "ConfigMap", "liftoff-agent")["data"]["launch-config.yaml"].as_str().unwrap();
    std::fs::write(config.join("launch-config.yaml"), config_text).unwrap();
    let queue: liftoff_core::api::CreateQueue =
        serde_json::from_value(json!({"name": "kubernetes", "resource": "kubernetes"})).unwrap();
    client.create_queue(&queue).await.unwrap();
    let health_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c = container(&objects, "liftoff-agent");
    let mut agent_cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_liftoff"));
    agent_cmd.kill_on_drop(true).current_dir(dir.path()).env_remove("LIFTOFF_API_KEY");
    for a in c["args"].as_array().unwrap() {
        let a = a.as_str().unwrap();
        agent_cmd.arg(match a {
            "0.0.0.0:7435" => format!("127.0.0.1:{health_port}"),
            "/etc/liftoff/launch-config.yaml" => config.join("launch-config.yaml").display().to_string(),
            other => other.to_string(),
        });
    }
    for env in c["env"].as_array().unwrap() {
        let (name, value) = (env["name"].as_str().unwrap(), env["value"].as_str().unwrap());
        let value = match name {
            "LIFTOFF_BASE_URL" => base.clone(),
            _ => value.replace("/var/run/secrets/liftoff", &secrets.display().to_string()),
        };
        agent_cmd.env(name, value);
    }
    let mut agent = agent_cmd.stdout(std::process::Stdio::null()).spawn().unwrap();
    for probe in ["readinessProbe", "livenessProbe"] {
        let path = c[probe]["httpGet"]["path"].as_str().unwrap();
        wait_ok(&format!("http://127.0.0.1:{health_port}{path}")).await;
    }
    // the agent is really serving: registered with the server
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client.list_agents().await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the agent did not register");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.kill().await.unwrap();
    server.kill().await.unwrap();
}

async fn wait_ok(url: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(url).await
            && r.status() == 200
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{url} did not answer 200 within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
