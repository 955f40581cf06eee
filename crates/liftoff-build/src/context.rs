//! A job's build context: which files go to the builder, under which names,
//! with which Dockerfile (inventory §4.1, items 21-24), streamed as a tar
//! straight from the job's code, without a temporary copy of the tree.
//!
//! [`BuildContext::prepare`] decides everything up front (the Dockerfile,
//! the files `.dockerignore` leaves in, the generated files, the rewritten
//! entrypoint) and keeps a sorted list of entries: files are read only when
//! the digest is computed or the tar written, and each is checked then to be
//! the very file that was listed (same inode, same size), so a file swapped
//! for a link meanwhile cannot bring a file from outside the code in.
//!
//! Every entry's mode is normalised (0644, 0755 when executable, 0755 for
//! directories) and its time and owner zeroed, so the tar and
//! [`BuildContext::content_digest`] depend only on names, modes and
//! contents: a fresh checkout of the same commit gives the same digest.
//! `.git` directories are never sent: they change with every fetch and have
//! no place in an image.

mod split;

use crate::dockerfile::{self, BadBaseImage, GeneratedSpec};
use crate::dockerignore::{DockerIgnore, DockerIgnoreError};
use crate::python::{self, BadPyproject, BadPythonVersion, Requirements};
use bytes::Bytes;
use futures::Stream;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// The name of the Dockerfile liftoff generates, and the first name looked
/// for beside the entrypoint.
pub const GENERATED_DOCKERFILE: &str = "Dockerfile.liftoff";
/// The reference's name for the Dockerfile beside the entrypoint.
pub const REFERENCE_DOCKERFILE: &str = "Dockerfile.wandb";
/// Where a generated Dockerfile's context keeps the code (as the reference).
const CODE_DIR: &str = "src";

/// What a job brings to a build.
#[derive(Debug, Clone)]
pub struct ContextRequest<'a> {
    /// The job's fetched code (a git checkout or an unpacked archive).
    pub source_dir: &'a Path,
    /// The job's `build_context` subdirectory: must exist inside `source_dir`.
    pub build_context: Option<&'a str>,
    /// The job's Dockerfile, relative to the build context.
    pub job_dockerfile: Option<&'a str>,
    /// The launch's Dockerfile override, relative to the build context.
    pub dockerfile_override: Option<&'a str>,
    /// The job's entrypoint, e.g. `["python", "train.py"]`.
    pub entrypoint: &'a [String],
    /// From the job or launch; else `.python-version` or `runtime.txt`.
    pub python_version: Option<&'a str>,
    /// `builder.accelerator.base_image`: the runtime stage of a generated
    /// Dockerfile.
    pub accelerator_base_image: Option<&'a str>,
    /// The Python image of generated Dockerfiles; `{version}` is replaced by
    /// the `major.minor` version (`python:{version}`).
    pub python_base_image: &'a str,
}

/// Bounds on what one context may hold.
#[derive(Debug, Clone, Copy)]
pub struct ContextLimits {
    /// Sum of the sizes of the files sent.
    pub max_bytes: u64,
    pub max_entries: u64,
}

impl Default for ContextLimits {
    fn default() -> Self {
        Self { max_bytes: 2 << 30, max_entries: 200_000 }
    }
}

/// Why a context cannot be prepared or written.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The job's `build_context` is not a directory of its code.
    #[error("build context '{path}' does not exist in the job's code")]
    MissingBuildContext { path: String },
    /// A Dockerfile named by the job or the launch is missing.
    #[error("Dockerfile does not exist at {path}")]
    MissingDockerfile { path: String },
    /// A path given by the job is absolute, climbs with `..`, or leads out
    /// of the code through a link.
    #[error("{what} '{path}' must stay inside the job's code: {why}")]
    OutsideCode { what: &'static str, path: String, why: &'static str },
    /// A generated Dockerfile needs a command to run.
    #[error("the job has no entrypoint: a generated Dockerfile needs one (give the job an entrypoint or a Dockerfile)")]
    NoEntrypoint,
    #[error(transparent)]
    PythonVersion(#[from] BadPythonVersion),
    #[error(transparent)]
    Pyproject(#[from] BadPyproject),
    #[error(transparent)]
    BaseImage(#[from] BadBaseImage),
    #[error(transparent)]
    DockerIgnore(#[from] DockerIgnoreError),
    /// More bytes or entries than [`ContextLimits`] allow.
    #[error(
        "the build context is too large: {what} exceeds the limit of {limit}; leave out data, \
         checkpoints and environments with .dockerignore"
    )]
    TooLarge { what: String, limit: String },
    /// A file name that is not UTF-8.
    #[error("file name {path:?} in the job's code is not UTF-8")]
    NonUtf8Name { path: PathBuf },
    /// A listed file changed (or was replaced) before it was read.
    #[error("'{path}' changed while the build context was being read: {why}")]
    Changed { path: String, why: &'static str },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContextError {
    let context = context.into();
    move |source| ContextError::Io { context, source }
}

/// A prepared context: what goes into the image.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Sorted by `path`, unique.
    entries: Vec<Entry>,
    dockerfile_path: String,
    dockerfile_text: String,
    entrypoint: Vec<String>,
    warnings: Vec<String>,
    total_bytes: u64,
    /// For a generated Dockerfile: the Dockerfile of the dependency image
    /// alone (see [`BuildContext::dependency_context`]).
    dependencies_dockerfile: Option<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// `/`-separated path in the tar.
    path: String,
    kind: EntryKind,
}

#[derive(Debug, Clone)]
enum EntryKind {
    Dir,
    File { disk: PathBuf, executable: bool, size: u64, dev: u64, ino: u64 },
    Symlink { target: PathBuf },
    Memory(Vec<u8>),
}

impl Entry {
    fn size(&self) -> u64 {
        match &self.kind {
            EntryKind::File { size, .. } => *size,
            EntryKind::Memory(b) => b.len() as u64,
            EntryKind::Dir | EntryKind::Symlink { .. } => 0,
        }
    }

    fn mode(&self) -> u32 {
        match &self.kind {
            EntryKind::Dir => 0o755,
            EntryKind::File { executable: true, .. } => 0o755,
            EntryKind::File { .. } | EntryKind::Memory(_) => 0o644,
            EntryKind::Symlink { .. } => 0o777,
        }
    }
}

/// Where the Dockerfile comes from (item 21's precedence).
enum Choice {
    /// Named by the launch or the job: its text, and its path relative to
    /// the context when it lies inside it.
    Named {
        text: String,
        inside: Option<String>,
    },
    /// `Dockerfile.liftoff`/`Dockerfile.wandb` beside the entrypoint file:
    /// the context becomes that directory.
    Adjacent {
        dir: PathBuf,
        name: &'static str,
        text: String,
    },
    Generated,
}

impl BuildContext {
    /// Prepares the context with the default [`ContextLimits`].
    pub fn prepare(req: &ContextRequest) -> Result<BuildContext, ContextError> {
        Self::prepare_with_limits(req, ContextLimits::default())
    }

    /// Chooses the Dockerfile (override > job > one beside the entrypoint >
    /// generated), lists the files `.dockerignore` leaves in, and, for a
    /// generated Dockerfile, works out the Python version and dependencies.
    pub fn prepare_with_limits(req: &ContextRequest, limits: ContextLimits) -> Result<BuildContext, ContextError> {
        let root = std::fs::canonicalize(req.source_dir)
            .map_err(io_err(format!("failed to open the job's code at {}", req.source_dir.display())))?;
        let mut context_dir = root.clone();
        let mut context_name = String::new();
        if let Some(bc) = req.build_context.filter(|b| !b.is_empty() && *b != ".") {
            let rel = relative("build context", bc)?;
            let dir = inside(&root, &root.join(&rel), "build context", bc)
                .map_err(|e| missing_as(e, || ContextError::MissingBuildContext { path: bc.to_string() }))?;
            if !dir.is_dir() {
                return Err(ContextError::MissingBuildContext { path: bc.to_string() });
            }
            context_dir = dir;
            context_name = format!("{}/", rel.display());
        }

        let mut warnings = Vec::new();
        let mut entrypoint = req.entrypoint.to_vec();
        let choice = choose_dockerfile(req, &root, &context_dir, &context_name, &mut entrypoint)?;
        if let Choice::Adjacent { dir, .. } = &choice {
            context_dir = dir.clone();
        }
        let generated = matches!(choice, Choice::Generated);

        let ignore = match read_inside(&root, &context_dir, ".dockerignore")? {
            Some(text) => DockerIgnore::parse(&text)?,
            None => DockerIgnore::default(),
        };
        let prefix = if generated { format!("{CODE_DIR}/") } else { String::new() };
        let mut walk = Walk { limits, entries: Vec::new(), bytes: 0 };
        if generated {
            walk.push(Entry { path: CODE_DIR.to_string(), kind: EntryKind::Dir })?;
        }
        walk.tree(&context_dir, &ignore, &prefix)?;
        if !generated && !ignore.is_empty() && ignore.excludes(".dockerignore") {
            // Docker always sends .dockerignore (the daemon reads it again).
            walk.file(&context_dir, ".dockerignore", ".dockerignore")?;
        }

        let mut dependencies_dockerfile = None;
        let (dockerfile_path, dockerfile_text) = match choice {
            Choice::Named { text, inside } => {
                let path = match inside {
                    Some(p) => p,
                    None => {
                        if walk.entries.iter().any(|e| e.path == GENERATED_DOCKERFILE) {
                            warnings.push(format!(
                                "the named Dockerfile is outside the build context: it is sent as \
                                 {GENERATED_DOCKERFILE}, in place of the context's own {GENERATED_DOCKERFILE}"
                            ));
                        }
                        GENERATED_DOCKERFILE.to_string()
                    }
                };
                (path, text)
            }
            Choice::Adjacent { name, text, .. } => (name.to_string(), text),
            Choice::Generated => {
                let (text, deps) = generate(req, &root, &context_dir, &mut walk, &entrypoint, &mut warnings)?;
                dependencies_dockerfile = Some(deps);
                (GENERATED_DOCKERFILE.to_string(), text)
            }
        };
        walk.memory(&dockerfile_path, dockerfile_text.clone().into_bytes())?;

        let mut entries = walk.entries;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        // A generated file replaces a listed one of the same name: the last
        // pushed (generated) wins; the sort is stable.
        entries.reverse();
        entries.dedup_by(|later, earlier| later.path == earlier.path);
        entries.reverse();
        let total_bytes = entries.iter().map(Entry::size).sum();
        Ok(BuildContext {
            entries,
            dockerfile_path,
            dockerfile_text,
            entrypoint,
            warnings,
            total_bytes,
            dependencies_dockerfile,
        })
    }

    /// The Dockerfile's path inside the context.
    pub fn dockerfile_path(&self) -> &str {
        &self.dockerfile_path
    }

    pub fn dockerfile_text(&self) -> &str {
        &self.dockerfile_text
    }

    /// The entrypoint to run: the job's, with the script's path made
    /// relative to the new context when a Dockerfile beside it was used.
    pub fn entrypoint(&self) -> &[String] {
        &self.entrypoint
    }

    /// Things the user should know, e.g. a requirement with no wheel for an
    /// offline install, or the Python version chosen for them.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Every image the Dockerfile's `FROM` lines name (not stages, not
    /// `scratch`).
    pub fn base_images(&self) -> Vec<String> {
        dockerfile::base_images(&self.dockerfile_text)
    }

    /// The paths the tar holds, in order (directories included).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.path.as_str())
    }

    /// Sum of the sizes of the files sent.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// `sha256:<hex>` over every entry's kind, path, mode and content (or
    /// link target), in order, and the Dockerfile's path: everything the
    /// context contributes to the image. Times and owners do not count.
    pub fn content_digest(&self) -> Result<String, ContextError> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        for entry in &self.entries {
            let tag: &[u8] = match entry.kind {
                EntryKind::Dir => b"d",
                EntryKind::File { .. } | EntryKind::Memory(_) => b"f",
                EntryKind::Symlink { .. } => b"l",
            };
            hasher.update(tag);
            hasher.update((entry.path.len() as u64).to_le_bytes());
            hasher.update(entry.path.as_bytes());
            hasher.update(entry.mode().to_le_bytes());
            match &entry.kind {
                EntryKind::Dir => {}
                EntryKind::Symlink { target } => {
                    let t = target.as_os_str().as_encoded_bytes();
                    hasher.update((t.len() as u64).to_le_bytes());
                    hasher.update(t);
                }
                EntryKind::Memory(bytes) => {
                    hasher.update((bytes.len() as u64).to_le_bytes());
                    hasher.update(bytes);
                }
                EntryKind::File { size, .. } => {
                    hasher.update(size.to_le_bytes());
                    let mut reader = open_listed(entry)?;
                    loop {
                        let n = reader.read(&mut buf).map_err(io_err(format!("failed to read '{}'", entry.path)))?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buf[..n]);
                    }
                    reader.finish()?;
                }
            }
        }
        hasher.update(b"dockerfile");
        hasher.update(self.dockerfile_path.as_bytes());
        Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// Writes the context as an uncompressed tar (what the Engine API's
    /// `/build` takes): sorted, times 0, owner 0, normalised modes. Returns
    /// the bytes written.
    pub fn write_tar<W: Write>(&self, w: W) -> Result<u64, ContextError> {
        write_entries(w, self.entries.iter().map(|e| (e, e.path.clone(), 0, 0)))
    }
}

/// Writes `entries` as a tar under the names and owners given: times 0,
/// normalised modes, directories without contents. Returns the bytes written.
fn write_entries<'a, W: Write>(
    w: W,
    entries: impl Iterator<Item = (&'a Entry, String, u64, u64)>,
) -> Result<u64, ContextError> {
    let mut builder = tar::Builder::new(Counting { inner: w, written: 0 });
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    for (entry, path, uid, gid) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mode(entry.mode());
        let failed = io_err(format!("failed to add '{}' to the tar", entry.path));
        match &entry.kind {
            EntryKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, &path, std::io::empty()).map_err(failed)?;
            }
            EntryKind::Symlink { target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, &path, target).map_err(failed)?;
            }
            EntryKind::Memory(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                builder.append_data(&mut header, &path, bytes.as_slice()).map_err(failed)?;
            }
            EntryKind::File { size, .. } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(*size);
                let mut reader = open_listed(entry)?;
                builder.append_data(&mut header, &path, &mut reader).map_err(failed)?;
                reader.finish()?;
            }
        }
    }
    let counting = builder.into_inner().map_err(io_err("failed to finish the tar"))?;
    Ok(counting.written)
}

/// Chunks of a streamed tar: big enough to keep the per-chunk cost (a
/// channel send, an HTTP frame) negligible, small enough to bound memory.
const STREAM_CHUNK: usize = 256 * 1024;

impl BuildContext {
    /// The tar of [`BuildContext::write_tar`] as a stream of chunks, written
    /// on a blocking thread (files are read with std I/O) only as fast as the
    /// consumer takes them: what bollard's `body_try_stream` takes for
    /// `/build`. A failure (a file changed meanwhile) ends the stream with
    /// that error. Needs a tokio runtime.
    pub fn tar_stream(&self) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        let context = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut writer = ChannelWriter { tx: tx.clone(), buf: Vec::with_capacity(STREAM_CHUNK) };
            let written = context
                .write_tar(&mut writer)
                .and_then(|_| writer.flush().map_err(io_err("failed to send the build context")));
            if let Err(e) = written {
                // nobody listens any more when the consumer dropped the stream
                let _ = tx.blocking_send(Err(std::io::Error::other(e)));
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
    }
}

/// A `Write` that hands full chunks to a channel, blocking while it is full.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(STREAM_CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the build context's reader went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        if self.buf.len() >= STREAM_CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The precedence of item 21, with the entrypoint rewritten for a
/// Dockerfile beside the entry file.
fn choose_dockerfile(
    req: &ContextRequest,
    root: &Path,
    context_dir: &Path,
    context_name: &str,
    entrypoint: &mut [String],
) -> Result<Choice, ContextError> {
    if let Some(named) = req.dockerfile_override.or(req.job_dockerfile).filter(|d| !d.is_empty()) {
        let rel = relative("Dockerfile", named)?;
        let shown = format!("{context_name}{}", rel.display());
        let path = inside(root, &context_dir.join(&rel), "Dockerfile", named)
            .map_err(|e| missing_as(e, || ContextError::MissingDockerfile { path: shown.clone() }))?;
        if !path.is_file() {
            return Err(ContextError::MissingDockerfile { path: shown });
        }
        let text = std::fs::read_to_string(&path).map_err(io_err(format!("failed to read the Dockerfile {shown}")))?;
        // Inside the context it keeps its name (the tar holds the text read
        // here, whatever .dockerignore says); outside, it is sent as
        // Dockerfile.liftoff, as the reference copies it to Dockerfile.wandb.
        let inside_context =
            path.starts_with(context_dir).then(|| rel.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/"));
        return Ok(Choice::Named { text, inside: inside_context });
    }
    if let Some((index, file)) = entry_file(entrypoint)
        && let Ok(rel) = relative("entrypoint", &file)
    {
        let dir_rel = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        if let Ok(dir) = inside(root, &context_dir.join(&dir_rel), "entrypoint", &file) {
            for name in [GENERATED_DOCKERFILE, REFERENCE_DOCKERFILE] {
                if let Some(text) = read_inside(root, &dir, name)? {
                    // As the reference: `python* X` and `bash X` run the
                    // script by its name in the new context; a script that
                    // is the command itself runs as `./name`.
                    let program = entrypoint[0].as_str();
                    if let Some(base) = rel.file_name().map(|b| b.to_string_lossy().into_owned()) {
                        if index == 1 && (program.starts_with("python") || program == "bash") {
                            entrypoint[1] = base;
                        } else if index == 0 && rel.parent().is_some_and(|p| !p.as_os_str().is_empty()) {
                            entrypoint[0] = format!("./{base}");
                        }
                    }
                    return Ok(Choice::Adjacent { dir, name, text });
                }
            }
        }
    }
    Ok(Choice::Generated)
}

/// The reference's `get_entrypoint_file`: the command itself when it is a
/// script, else its first argument.
/// An option (`python -m pkg`, `bash -c '...'`) names no file.
fn entry_file(entrypoint: &[String]) -> Option<(usize, String)> {
    let first = entrypoint.first()?;
    if first.ends_with(".py") || first.ends_with(".sh") {
        return Some((0, first.clone()));
    }
    entrypoint.get(1).filter(|f| !f.starts_with('-') && !f.is_empty()).map(|f| (1, f.clone()))
}

/// The generated Dockerfile, and the files it needs added to `walk`.
fn generate(
    req: &ContextRequest,
    root: &Path,
    code_dir: &Path,
    walk: &mut Walk,
    entrypoint: &[String],
    warnings: &mut Vec<String>,
) -> Result<(String, String), ContextError> {
    if entrypoint.is_empty() {
        return Err(ContextError::NoEntrypoint);
    }
    let version = match req.python_version.filter(|v| !v.trim().is_empty()) {
        Some(v) => python::major_minor(v, "python_version")?,
        None => match read_inside(root, code_dir, ".python-version")? {
            Some(text) => python::from_python_version_file(&text)?,
            None => match read_inside(root, code_dir, "runtime.txt")? {
                Some(text) => python::from_runtime_txt(&text)?,
                None => {
                    warnings.push(format!(
                        "no Python version given (the job's python_version, .python-version or runtime.txt): \
                         using {}",
                        python::DEFAULT_PYTHON_VERSION
                    ));
                    python::DEFAULT_PYTHON_VERSION.to_string()
                }
            },
        },
    };
    if let Some(image) = req.accelerator_base_image {
        dockerfile::validate_base_image(image)?;
    }
    let listed = |walk: &Walk, name: &str| walk.entries.iter().any(|e| e.path == format!("{CODE_DIR}/{name}"));
    let requirements = if listed(walk, "requirements.txt") {
        Requirements::File
    } else if let Some(deps) = match read_inside(root, code_dir, "pyproject.toml")? {
        Some(text) => python::pyproject_dependencies(&text)?,
        None => None,
    } {
        Requirements::Pyproject { text: deps.join("\n") + "\n" }
    } else if listed(walk, "requirements.frozen.txt") {
        Requirements::Frozen
    } else {
        warnings.push(
            "no requirements file found (requirements.txt, pyproject.toml [project].dependencies or \
             requirements.frozen.txt): the image has only the Python standard library"
                .to_string(),
        );
        Requirements::None
    };
    let requirements_text = match &requirements {
        Requirements::Pyproject { text } => Some(text.clone()),
        Requirements::File | Requirements::Frozen => {
            read_inside(root, code_dir, requirements.file_name().unwrap_or_default())?
        }
        Requirements::None => None,
    };
    if let Requirements::Pyproject { text } = &requirements {
        walk.memory(&format!("{CODE_DIR}/requirements.txt"), text.clone().into_bytes())?;
    }
    let wheel_names: Vec<String> = walk
        .entries
        .iter()
        .filter_map(|e| e.path.strip_prefix(&format!("{CODE_DIR}/wheels/")))
        .filter(|p| !p.contains('/'))
        .filter_map(python::wheel_name)
        .collect();
    let wheels = !wheel_names.is_empty();
    if let (true, Some(text), Some(file)) = (wheels, &requirements_text, requirements.file_name()) {
        for name in python::requirement_names(text) {
            if !wheel_names.contains(&name) {
                warnings.push(format!(
                    "{name} is in {file} but not present in wheels/: the install reads wheels/ only and will fail"
                ));
            }
        }
    }
    if let Some((_, file)) = entry_file(entrypoint)
        && !listed(walk, &crate::dockerignore::clean(&file))
    {
        warnings.push(format!("{file} (the entrypoint's script) is not present in the build context"));
    }
    let extra_index_url = requirements_text.as_deref().and_then(python::torch_index_url);
    let python_image = req.python_base_image.replace("{version}", &version);
    let spec = GeneratedSpec {
        python_version: &version,
        python_image: &python_image,
        accelerator_base_image: req.accelerator_base_image,
        requirements_file: requirements.file_name(),
        wheels,
        extra_index_url: extra_index_url.as_deref(),
        entrypoint,
    };
    Ok((dockerfile::generate(&spec), dockerfile::generate_dependencies(&spec)))
}

/// A path the job gave: relative, without `..`.
fn relative(what: &'static str, path: &str) -> Result<PathBuf, ContextError> {
    let p = Path::new(path);
    let refuse = |why| ContextError::OutsideCode { what, path: path.to_string(), why };
    if p.is_absolute() {
        return Err(refuse("it is absolute"));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(refuse("it climbs out with '..'"));
    }
    Ok(p.components().filter(|c| matches!(c, Component::Normal(_))).collect())
}

/// `path` with its links followed, refused unless it is still under `root`.
fn inside(root: &Path, path: &Path, what: &'static str, shown: &str) -> Result<PathBuf, ContextError> {
    let real = std::fs::canonicalize(path).map_err(io_err(format!("failed to open {what} '{shown}'")))?;
    if !real.starts_with(root) {
        return Err(ContextError::OutsideCode { what, path: shown.to_string(), why: "a link leads out of it" });
    }
    Ok(real)
}

/// Turns "not found" into the caller's own error.
fn missing_as(e: ContextError, missing: impl FnOnce() -> ContextError) -> ContextError {
    match e {
        ContextError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => missing(),
        other => other,
    }
}

/// The text of `dir/name` if it is a file inside `root`.
fn read_inside(root: &Path, dir: &Path, name: &str) -> Result<Option<String>, ContextError> {
    let path = dir.join(name);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let real = inside(root, &path, "file", name)?;
    if !real.is_file() {
        return Ok(None);
    }
    std::fs::read_to_string(&real).map(Some).map_err(io_err(format!("failed to read {name}")))
}

/// The listing under way, with its bounds.
struct Walk {
    limits: ContextLimits,
    entries: Vec<Entry>,
    bytes: u64,
}

impl Walk {
    fn push(&mut self, entry: Entry) -> Result<(), ContextError> {
        if self.entries.len() as u64 >= self.limits.max_entries {
            return Err(ContextError::TooLarge {
                what: format!("more than {} files and directories", self.limits.max_entries),
                limit: format!("{} entries", self.limits.max_entries),
            });
        }
        self.bytes += entry.size();
        if self.bytes > self.limits.max_bytes {
            return Err(ContextError::TooLarge {
                what: format!("{} bytes (reached at '{}')", self.bytes, entry.path),
                limit: format!("{} bytes", self.limits.max_bytes),
            });
        }
        self.entries.push(entry);
        Ok(())
    }

    fn memory(&mut self, path: &str, bytes: Vec<u8>) -> Result<(), ContextError> {
        self.push(Entry { path: path.to_string(), kind: EntryKind::Memory(bytes) })
    }

    /// Adds one file of the tree (not following a link).
    fn file(&mut self, dir: &Path, rel: &str, tar_path: &str) -> Result<(), ContextError> {
        let disk = dir.join(rel);
        let md = std::fs::symlink_metadata(&disk).map_err(io_err(format!("failed to read '{rel}'")))?;
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&disk).map_err(io_err(format!("failed to read the link '{rel}'")))?;
            EntryKind::Symlink { target }
        } else if ft.is_file() {
            EntryKind::File { executable: md.mode() & 0o111 != 0, size: md.len(), dev: md.dev(), ino: md.ino(), disk }
        } else {
            return Ok(()); // sockets, fifos and devices have no place in an image
        };
        self.push(Entry { path: tar_path.to_string(), kind })
    }

    /// Lists `dir` depth first, leaving out what `.dockerignore` excludes
    /// and `.git`. An excluded directory is entered only when an exception
    /// may take something under it back.
    fn tree(&mut self, dir: &Path, ignore: &DockerIgnore, prefix: &str) -> Result<(), ContextError> {
        let mut stack: Vec<String> = vec![String::new()];
        while let Some(rel_dir) = stack.pop() {
            let full = if rel_dir.is_empty() { dir.to_path_buf() } else { dir.join(&rel_dir) };
            let mut names = Vec::new();
            let failed = || io_err(format!("failed to list '{rel_dir}'"));
            for item in std::fs::read_dir(&full).map_err(failed())? {
                let item = item.map_err(failed())?;
                let name = item.file_name();
                let name = name.to_str().ok_or_else(|| ContextError::NonUtf8Name { path: item.path() })?.to_string();
                // the entry's own type: a link to a directory is not entered
                let is_dir = item.file_type().map_err(failed())?.is_dir();
                names.push((name, is_dir));
            }
            names.sort();
            // reversed onto the stack, so directories are listed in order
            for (name, is_dir) in names.into_iter().rev() {
                if name == ".git" {
                    continue;
                }
                let rel = if rel_dir.is_empty() { name } else { format!("{rel_dir}/{name}") };
                if ignore.excludes(&rel) {
                    if is_dir && ignore.has_exceptions() {
                        stack.push(rel);
                    }
                    continue;
                }
                self.file(dir, &rel, &format!("{prefix}{rel}"))?;
                if is_dir {
                    stack.push(rel);
                }
            }
        }
        Ok(())
    }
}

/// A listed file, opened again and checked to be the same file, that reads
/// exactly the listed size.
struct Listed<'a> {
    file: std::io::Take<File>,
    path: &'a str,
    expected: u64,
    read: u64,
}

fn open_listed(entry: &Entry) -> Result<Listed<'_>, ContextError> {
    let EntryKind::File { disk, size, dev, ino, .. } = &entry.kind else {
        unreachable!("open_listed is only called for files")
    };
    let file = File::open(disk).map_err(io_err(format!("failed to open '{}'", entry.path)))?;
    let md = file.metadata().map_err(io_err(format!("failed to read '{}'", entry.path)))?;
    if md.dev() != *dev || md.ino() != *ino {
        return Err(ContextError::Changed { path: entry.path.clone(), why: "it was replaced" });
    }
    if md.len() != *size {
        return Err(ContextError::Changed { path: entry.path.clone(), why: "its size changed" });
    }
    Ok(Listed { file: file.take(*size), path: &entry.path, expected: *size, read: 0 })
}

impl Read for Listed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl Listed<'_> {
    fn finish(self) -> Result<(), ContextError> {
        if self.read != self.expected {
            return Err(ContextError::Changed { path: self.path.to_string(), why: "it was cut short" });
        }
        Ok(())
    }
}

struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
