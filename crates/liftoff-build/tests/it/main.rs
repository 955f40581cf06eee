//! liftoff-build's integration tests, one module per subject, built as one test
//! binary: a binary per file linked every dependency again for each.

mod context;
mod engine_build;
#[cfg(feature = "kubernetes")]
mod kaniko_builder;
mod registries;
