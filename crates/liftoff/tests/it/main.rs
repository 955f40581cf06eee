//! liftoff's integration tests, one module per subject, built as one test
//! binary: a binary per file linked every dependency again for each.

mod cli;
mod cloud_runners;
mod config_cli;
mod container_image;
mod deploy_manifests;
mod doctor;
mod faults;
mod instant_images;
mod kubernetes_agent_kill;
mod launch;
mod logs_follow;
mod permissions_custom;
mod process;
mod support;
mod tls_ca;
