//! What a generated Dockerfile needs to know about a Python job: its Python
//! version and where its dependencies are listed (inventory items 22, 24).

use serde::Deserialize;

/// The Python version when neither the job nor its code names one.
pub const DEFAULT_PYTHON_VERSION: &str = "3.11";

/// Where a job's dependencies come from, first match wins (item 22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirements {
    /// `requirements.txt` in the code.
    File,
    /// `[project].dependencies` of `pyproject.toml`, written to a generated
    /// `requirements.txt`.
    Pyproject { text: String },
    /// `requirements.frozen.txt` (a `pip freeze` of the author's setup).
    Frozen,
    /// Nothing: the image has the standard library only.
    None,
}

impl Requirements {
    /// The file name the build stage installs from, if any.
    pub fn file_name(&self) -> Option<&'static str> {
        match self {
            Self::File | Self::Pyproject { .. } => Some("requirements.txt"),
            Self::Frozen => Some("requirements.frozen.txt"),
            Self::None => None,
        }
    }
}

/// A version file or value that does not name a `major.minor` Python.
#[derive(Debug, thiserror::Error)]
#[error("{source_name} does not name a Python version ('{value}'): expected e.g. 3.11 or 3.11.4")]
pub struct BadPythonVersion {
    pub source_name: String,
    pub value: String,
}

/// `pyproject.toml` that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("pyproject.toml is not valid TOML: {0}")]
pub struct BadPyproject(String);

/// `3.11`, `3.11.4`, `python-3.11.4` (runtime.txt), `python3.11` to
/// `major.minor`.
pub fn major_minor(value: &str, source_name: &str) -> Result<String, BadPythonVersion> {
    let bad = || BadPythonVersion { source_name: source_name.to_string(), value: value.to_string() };
    let v = value.trim();
    let v = v.strip_prefix("python-").or_else(|| v.strip_prefix("python")).unwrap_or(v);
    let mut parts = v.split('.');
    let (Some(major), Some(minor)) = (parts.next(), parts.next()) else { return Err(bad()) };
    let numeric = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    // a patch part may carry a pre-release (3.13.0rc1) but must start with a digit
    let patch_ok = parts.next().is_none_or(|p| p.bytes().next().is_some_and(|b| b.is_ascii_digit()));
    if !numeric(major) || !numeric(minor) || !patch_ok || parts.next().is_some() {
        return Err(bad());
    }
    Ok(format!("{major}.{minor}"))
}

/// The version in a `.python-version` file (pyenv's format: the first line
/// that is not a comment).
pub fn from_python_version_file(text: &str) -> Result<String, BadPythonVersion> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
    major_minor(line, ".python-version")
}

/// The version in a `runtime.txt` (`python-3.11.4`).
pub fn from_runtime_txt(text: &str) -> Result<String, BadPythonVersion> {
    major_minor(text.lines().next().unwrap_or(""), "runtime.txt")
}

/// `[project].dependencies` of a `pyproject.toml` as requirement lines, or
/// `None` when it lists none.
pub fn pyproject_dependencies(text: &str) -> Result<Option<Vec<String>>, BadPyproject> {
    #[derive(Deserialize)]
    struct Pyproject {
        project: Option<Project>,
    }
    #[derive(Deserialize)]
    struct Project {
        dependencies: Option<Vec<String>>,
    }
    let doc: Pyproject = toml::from_str(text).map_err(|e| BadPyproject(e.to_string()))?;
    Ok(doc.project.and_then(|p| p.dependencies).filter(|d| !d.is_empty()))
}

/// The distribution names a requirements file lists (lower-case, `_` and
/// `.` as `-`, as PEP 503 normalises them), skipping options and comments.
pub fn requirement_names(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('-'))
        .filter_map(|l| {
            let end = l.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))).unwrap_or(l.len());
            let name = &l[..end];
            (!name.is_empty()).then(|| normalize(name))
        })
        .collect()
}

/// PEP 503 name normalisation.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = if matches!(c, '_' | '.') { '-' } else { c.to_ascii_lowercase() };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out
}

/// The distribution name of a wheel file (`numpy-1.26.4-cp311-...whl`).
pub fn wheel_name(file_name: &str) -> Option<String> {
    let stem = file_name.strip_suffix(".whl")?;
    Some(normalize(stem.split('-').next()?))
}

/// A PyTorch pin with a local build variant: `torch==2.0.1+cu118`,
/// `torchvision==0.15.2+cpu`. Those builds are not on PyPI but on PyTorch's
/// own index for that variant (the reference's bootstrap, item 24).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorchPin {
    /// `""`, `"vision"`, `"audio"`.
    pub package_suffix: String,
    /// `"+cpu"`, `"+cu118"`.
    pub variant: String,
}

/// The reference's `torch(vision|audio)?==X.Y.Z(+cuNN|+cpu)` match.
pub fn torch_pin(line: &str) -> Option<TorchPin> {
    let rest = line.trim().strip_prefix("torch")?;
    let (suffix, rest) =
        ["vision", "audio"].iter().find_map(|s| rest.strip_prefix(s).map(|r| (*s, r))).unwrap_or(("", rest));
    let version = rest.strip_prefix("==")?;
    let (numbers, variant) = version.split_once('+')?;
    let mut parts = numbers.split('.');
    let all_digits = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !(all_digits(parts.next()) && all_digits(parts.next()) && all_digits(parts.next()) && parts.next().is_none()) {
        return None;
    }
    let ok_variant = variant == "cpu"
        || variant.strip_prefix("cu").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
    ok_variant.then(|| TorchPin { package_suffix: suffix.to_string(), variant: format!("+{variant}") })
}

/// PyTorch's index for the variant the requirements pin, when they pin one
/// (and only one).
pub fn torch_index_url(requirements: &str) -> Option<String> {
    let mut variants: Vec<String> = requirements.lines().filter_map(torch_pin).map(|p| p.variant).collect();
    variants.sort();
    variants.dedup();
    match variants.as_slice() {
        [one] => Some(format!("https://download.pytorch.org/whl/{}", &one[1..])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_every_source() {
        assert_eq!(major_minor("3.11", "job").unwrap(), "3.11");
        assert_eq!(major_minor("3.12.4", "job").unwrap(), "3.12");
        assert_eq!(major_minor("3.13.0rc1", "job").unwrap(), "3.13");
        assert_eq!(from_runtime_txt("python-3.10.13\n").unwrap(), "3.10");
        assert_eq!(from_python_version_file("# pyenv\n3.9.18\n").unwrap(), "3.9");
        let err = from_python_version_file("pypy3.9\n").unwrap_err().to_string();
        assert_eq!(err, ".python-version does not name a Python version ('pypy3.9'): expected e.g. 3.11 or 3.11.4");
        assert!(major_minor("3", "job").is_err());
        assert!(major_minor("3.x", "job").is_err());
        assert!(major_minor("3.11; rm -rf /", "job").is_err());
    }

    #[test]
    fn pyproject_dependencies_or_none() {
        let text = "[project]\nname = \"x\"\ndependencies = [\"numpy>=1.26\", \"requests\"]\n";
        assert_eq!(pyproject_dependencies(text).unwrap().unwrap(), vec!["numpy>=1.26", "requests"]);
        assert_eq!(pyproject_dependencies("[project]\nname = \"x\"\n").unwrap(), None);
        assert_eq!(pyproject_dependencies("[tool.poetry]\nname = \"x\"\n").unwrap(), None);
        assert_eq!(pyproject_dependencies("[project]\ndependencies = []\n").unwrap(), None);
        assert!(
            pyproject_dependencies("[project\n")
                .unwrap_err()
                .to_string()
                .starts_with("pyproject.toml is not valid TOML")
        );
    }

    #[test]
    fn requirement_and_wheel_names_are_normalised() {
        let text = "# comment\n--index-url x\nNumPy>=1.26\nscikit_learn==1.4 ; python_version>'3'\n\nzope.interface\n";
        assert_eq!(requirement_names(text), vec!["numpy", "scikit-learn", "zope-interface"]);
        assert_eq!(wheel_name("scikit_learn-1.4.0-cp311-cp311-linux_x86_64.whl").as_deref(), Some("scikit-learn"));
        assert_eq!(wheel_name("README.md"), None);
    }

    /// Inventory item 24.
    #[test]
    fn torch_variant_pins() {
        assert_eq!(
            torch_pin("torchvision==2.0.1+cpu"),
            Some(TorchPin { package_suffix: "vision".into(), variant: "+cpu".into() })
        );
        assert_eq!(
            torch_pin("torch==2.0.1+cu118"),
            Some(TorchPin { package_suffix: "".into(), variant: "+cu118".into() })
        );
        assert_eq!(torch_pin("torch"), None);
        assert_eq!(torch_pin("torch==2.0.1"), None);
        assert_eq!(torch_pin("torchtext==0.15.2+cpu"), None);
        assert_eq!(
            torch_index_url("numpy==1.26.4\ntorch==2.0.1+cu118\ntorchaudio==2.0.2+cu118\n").as_deref(),
            Some("https://download.pytorch.org/whl/cu118")
        );
        assert_eq!(torch_index_url("torch==2.0.1\n"), None);
    }
}
