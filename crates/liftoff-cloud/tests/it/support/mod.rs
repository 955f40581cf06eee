//! What the cloud tests share: the emulators' variables (a missing one fails
//! the test under `CI`) and a local GCP: a token endpoint and a GCS fake.

pub use liftoff_testkit::fakes::gcp as gcp_fake;

pub use liftoff_testkit::required_env;

/// A fresh prefix so parallel tests and reruns never see each other's objects.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

/// A small tree: two files at the top, one nested, one binary.
pub fn sample_tree(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let files = vec![
        ("Dockerfile".to_string(), b"FROM python:3.12\nCOPY . /app\n".to_vec()),
        ("train.py".to_string(), b"print('hello')\n".to_vec()),
        ("pkg/sub/data.bin".to_string(), (0..=255u8).cycle().take(70_000).collect()),
    ];
    for (rel, bytes) in &files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    files
}
