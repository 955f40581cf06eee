//! [`make_wheel`]: the one dependency of the Python jobs test builds install
//! offline (builds here have no network): a pure-Python wheel written with
//! the host's Python (zipfile, with a RECORD whose hashes pip checks).

use std::path::{Path, PathBuf};

/// Writes `liftoff_hello-<version>-py3-none-any.whl` (module `liftoff_hello`,
/// whose `NAME` is `'liftoff-hello <version>'`) into `dir/wheels/`; returns its path.
pub fn make_wheel(dir: &Path, version: &str) -> PathBuf {
    let script = r#"
import base64, sys, hashlib, zipfile
out, v = sys.argv[1], sys.argv[2]
files = {
    "liftoff_hello/__init__.py": f"NAME = 'liftoff-hello {v}'\n".encode(),
    f"liftoff_hello-{v}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: liftoff-hello\nVersion: {v}\n".encode(),
    f"liftoff_hello-{v}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: liftoff-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = ""
for name, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record += f"{name},sha256={digest},{len(data)}\n"
record += f"liftoff_hello-{v}.dist-info/RECORD,,\n"
with zipfile.ZipFile(out, "w") as z:
    for name, data in files.items():
        z.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
    z.writestr(zipfile.ZipInfo(f"liftoff_hello-{v}.dist-info/RECORD", (1980, 1, 1, 0, 0, 0)), record)
"#;
    let out = dir.join(format!("wheels/liftoff_hello-{version}-py3-none-any.whl"));
    std::fs::create_dir_all(out.parent().expect("wheels/")).expect("create wheels/");
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&out)
        .arg(version)
        .status()
        .expect("run python3 (the host's Python makes the test wheel)");
    assert!(status.success(), "making the test wheel failed");
    out
}
