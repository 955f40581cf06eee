//! liftoff-agent's integration tests, one module per subject, built as one test
//! binary: a binary per file linked every dependency again for each.

mod agent;
mod builds;
mod container_jobs;
mod faults;
mod git_source;
mod kaniko;
mod kubernetes;
mod kubernetes_custom;
mod kubernetes_pods;
mod lifecycle;
mod remote_runner;
mod sagemaker;
mod support;
mod ui_browser;
mod vertex;
