//! Liftoff's domain model: queues and their templates, jobs and their sources,
//! run-queue items and the one state machine that moves them. Pure data and
//! rules; this crate does no I/O and knows nothing of HTTP or SQL.

pub mod api;
pub mod docker_options;
pub mod history;
pub mod image_ref;
pub mod item;
pub mod job;
pub mod kube_args;
pub mod launch_config;
pub mod macros;
pub mod priority;
pub mod process_options;
pub mod queue;
pub mod resource;
pub mod rules;
pub mod run_env;
pub mod sagemaker_args;
pub mod template;
pub mod vertex_args;

pub use history::{ItemTransition, RunStreamEnd, RunStreamPosition, TransitionCause, queue_event_number};
pub use image_ref::ImageRef;
pub use item::{Item, ItemEvent, ItemState, MAX_RESUMES, Stage, TransitionError};
pub use job::{JobRef, JobSource, JobSourceSpec};
pub use priority::Priority;
pub use queue::{Queue, TemplateVariable, VarKind};
pub use resource::ResourceType;
