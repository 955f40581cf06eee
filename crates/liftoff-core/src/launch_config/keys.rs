//! The one table of keys the file may hold. The validator refuses any key not
//! listed here and the JSON Schema is generated from it, so the two agree.

/// What a key's value looks like.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    /// Any scalar, read as a string.
    Text,
    /// A list of scalars, read as strings.
    TextList,
    /// `true`/`false`/`yes`/`no`/`on`/`off`, any case.
    Flag,
    /// An integer, or a string holding one (the reference casts strings).
    Integer { min: i64, max: i64 },
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
    /// Any mapping, kept as data (a Kubernetes manifest).
    Mapping,
    /// A nested block with its own keys.
    Block(&'static [Key]),
}

/// One key: its name, value shape, a line of documentation, its default (as
/// JSON text), the block types that use it (`used_by`, empty for all) and the
/// block types that require it (`required_by`; `["*"]` for all).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    pub name: &'static str,
    pub shape: Shape,
    pub doc: &'static str,
    pub default: Option<&'static str>,
    pub used_by: &'static [&'static str],
    pub required_by: &'static [&'static str],
}

const fn key(name: &'static str, shape: Shape, doc: &'static str) -> Key {
    Key { name, shape, doc, default: None, used_by: &[], required_by: &[] }
}

impl Key {
    const fn default(mut self, json: &'static str) -> Self {
        self.default = Some(json);
        self
    }
    const fn used_by(mut self, types: &'static [&'static str]) -> Self {
        self.used_by = types;
        self
    }
    const fn required_by(mut self, types: &'static [&'static str]) -> Self {
        self.required_by = types;
        self
    }

    /// Whether a block of type `ty` uses this key (`None`: the type is unknown).
    pub fn is_used_by(&self, ty: Option<&str>) -> bool {
        self.used_by.is_empty() || ty.is_none_or(|t| self.used_by.contains(&t))
    }
}

/// The key called `name` in `table`; the tables are constants, so a miss is a bug.
pub(crate) fn key_named(table: &'static [Key], name: &str) -> &'static Key {
    table.iter().find(|k| k.name == name).unwrap_or_else(|| panic!("no key '{name}' in the table"))
}

/// The largest count `max_jobs` and `max_schedulers` accept.
pub(crate) const MAX_COUNT: i64 = u32::MAX as i64;

pub(crate) const BUILDER_TYPES: &[&str] = &["docker", "kaniko", "noop"];
pub(crate) const PLATFORMS: &[&str] = &["linux/amd64", "linux/arm64"];
pub(crate) const ENVIRONMENT_TYPES: &[&str] = &["local", "aws", "gcp", "azure"];
pub(crate) const REGISTRY_TYPES: &[&str] = &["local", "ecr", "gcr", "acr"];

pub(crate) const AGENT_KEYS: &[Key] = &[
    key("entity", Shape::Text, "Entity whose queues the agent serves; defaults to the API key's entity."),
    key("project", Shape::Text, "Project the agent registers under."),
    key("queues", Shape::TextList, "Queues to serve, polled in turn."),
    key("queue", Shape::Text, "One queue to serve, added to `queues`."),
    key("max_jobs", Shape::Integer { min: -1, max: MAX_COUNT }, "Jobs run at once; -1 is unlimited.").default("1"),
    key("max_schedulers", Shape::Integer { min: -1, max: MAX_COUNT }, "Sweep schedulers run at once; -1 is unlimited.")
        .default("1"),
    key("secure_mode", Shape::Flag, "Refuse jobs that override the entrypoint or ask for unsafe resource options.")
        .default("false"),
    key(
        "verbosity",
        Shape::Integer { min: 0, max: 255 },
        "0: status every 300 s; 1: every 20 s; 2: also internal logs.",
    )
    .default("0"),
    key("stopped_run_timeout", Shape::Integer { min: 0, max: i64::MAX }, "Seconds between a stop and a forced cancel.")
        .default("60"),
    key(
        "start_timeout",
        Shape::Integer { min: 1, max: i64::MAX },
        "Seconds a run may take to start before it is failed.",
    )
    .default("1800"),
    key("base_url", Shape::Text, "The Liftoff server's URL (http or https)."),
    key("allow_http_git", Shape::Flag, "Allow jobs to clone git repositories over plain http.").default("false"),
    key("builder", Shape::Block(BUILDER_KEYS), "How images are built and where they are pushed."),
    key("environment", Shape::Block(ENVIRONMENT_KEYS), "The cloud whose credentials the agent uses."),
    key("registry", Shape::Block(REGISTRY_KEYS), "Deprecated: where images are pushed; use builder.destination."),
];

const KANIKO: &[&str] = &["kaniko"];
/// [`super::DEFAULT_KANIKO_IMAGE`] as JSON text (the key table's defaults are JSON; a test keeps them equal).
pub(crate) const DEFAULT_KANIKO_IMAGE_JSON: &str = "\"ghcr.io/osscontainertools/kaniko:v1.28.2@sha256:4ea0e7301e3f6806de15150e4982c73018351e28c1dca6947bd3b4afb5ae3c60\"";

pub(crate) const BUILDER_KEYS: &[Key] = &[
    key(
        "type",
        Shape::Choice(BUILDER_TYPES),
        "docker (local engine), kaniko (Kubernetes Job) or noop (prebuilt images only).",
    )
    .required_by(&["*"]),
    key("destination", Shape::Text, "Image repository to push to, without a tag."),
    key("platform", Shape::Choice(PLATFORMS), "Platform of the built image."),
    key("build-context-store", Shape::Text, "s3://, gs:// or https://<account>.blob.core.windows.net/<container> URI.")
        .used_by(KANIKO)
        .required_by(KANIKO),
    key(
        "build-job-name",
        Shape::Text,
        "Name prefix of the Kubernetes build Jobs (`<prefix>-<content tag>`; at most 30).",
    )
    .default("\"wandb-launch-container-build\"")
    .used_by(KANIKO),
    key("namespace", Shape::Text, "Namespace of the build Jobs (default: the agent's kubeconfig context's or pod's).")
        .used_by(KANIKO),
    key("service-account", Shape::Text, "Service account of the build pods (default: the namespace's `default`).")
        .used_by(KANIKO),
    key("build-deadline", Shape::Integer { min: 60, max: 86_400 }, "Seconds a build Job may run before it is failed.")
        .default("1800")
        .used_by(KANIKO),
    key("cache", Shape::Flag, "Kaniko's layer cache in the registry (`--cache`).").default("true").used_by(KANIKO),
    key("cache-repo", Shape::Text, "Repository of kaniko's layer cache (default: `<destination>/cache`).")
        .used_by(KANIKO),
    key("secret-name", Shape::Text, "Kubernetes secret holding cloud credentials (with secret-key).").used_by(KANIKO),
    key("secret-key", Shape::Text, "Key of the credentials file in that secret (with secret-name).").used_by(KANIKO),
    key(
        "kaniko-image",
        Shape::Text,
        "Kaniko executor image (default: osscontainertools' maintained fork, pinned by digest).",
    )
    .default(DEFAULT_KANIKO_IMAGE_JSON)
    .used_by(KANIKO),
    key("kaniko-config", Shape::Mapping, "Base Kubernetes Job manifest for the build.").used_by(KANIKO),
    key("accelerator", Shape::Block(BASE_IMAGE_KEYS), "Base image for accelerator (GPU) builds."),
    key("cuda", Shape::Block(BASE_IMAGE_KEYS), "Legacy name of `accelerator`."),
];

pub(crate) const BASE_IMAGE_KEYS: &[Key] = &[key(
    "base_image",
    Shape::Text,
    "Image the built image starts from, e.g. nvidia/cuda:12.4.1-runtime-ubuntu22.04.",
)
.required_by(&["*"])];

pub(crate) const ENVIRONMENT_KEYS: &[Key] = &[
    key("type", Shape::Choice(ENVIRONMENT_TYPES), "local, aws, gcp or azure.").required_by(&["*"]),
    key("region", Shape::Text, "Cloud region the agent runs in.")
        .used_by(&["aws", "gcp", "azure"])
        .required_by(&["aws"]),
    key("project", Shape::Text, "GCP project id (default: the application default credentials' project).")
        .used_by(&["gcp"]),
    key("profile", Shape::Text, "AWS profile of the shared credentials file.").used_by(&["aws"]),
];

pub(crate) const REGISTRY_KEYS: &[Key] = &[
    key("type", Shape::Choice(REGISTRY_TYPES), "local, ecr, gcr (Artifact Registry) or acr."),
    key("uri", Shape::Text, "Image repository URI, without a tag.").used_by(&["ecr", "gcr", "acr"]),
    key("url", Shape::Text, "Legacy name of `uri`.").used_by(&["ecr", "gcr", "acr"]),
    key("repository", Shape::Text, "Repository name, instead of `uri` (ecr, gcr).").used_by(&["ecr", "gcr"]),
    key("image-name", Shape::Text, "Image name within the repository, with `repository` (gcr).").used_by(&["gcr"]),
];

#[cfg(test)]
mod tests {
    #[test]
    fn the_kaniko_image_default_is_the_constant() {
        assert_eq!(super::DEFAULT_KANIKO_IMAGE_JSON, format!("\"{}\"", super::super::DEFAULT_KANIKO_IMAGE));
    }
}
