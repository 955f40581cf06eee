//! [`ContextStore`]: a build-context store URI opened with the environment's credentials.
//! SKELETON: filled in by the environments work.

/// A bucket or container and prefix, ready for uploads.
pub struct ContextStore {}
