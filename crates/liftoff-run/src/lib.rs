//! Runners: where a claimed run actually executes. `process` runs the
//! entrypoint as a local process group under `supervise`; `container` runs
//! it in a container through the Docker Engine API.

pub mod container;
pub mod job_error;
pub mod lines;
pub mod process;
pub mod supervise;

pub use job_error::{JobError, JobErrorCode};
pub use lines::LineSplitter;
/// A line of a run's output, tagged with the stream it came from.
pub type LogLine = (liftoff_core::api::LogStream, String);
