//! The Liftoff agent: registers with the server, long-polls its queues in
//! round robin, runs claimed items with a runner, ships their logs and
//! reports their outcome under a lease.

mod abort_on_drop;
mod adopt;
mod agent;
mod agent_lock;
mod blob_cache;
mod build_step;
mod git_source;
mod job_task;
mod log_shipper;
mod materialize;
mod runners;

pub use agent::{AgentError, AgentOptions, run_agent, run_agent_with};
pub use agent_lock::AgentLockError;
pub use blob_cache::BlobCache;
pub use git_source::{ALLOW_HTTP_GIT_ENV, CheckedOut, GitError, GitPolicy, check_git_remote, fetch_git};
pub use runners::{agent_runners, local_runners};
