//! liftoff-core's integration tests, one module per subject, built as one test
//! binary: a binary per file linked every dependency again for each.

mod docker_options;
mod launch_config;
