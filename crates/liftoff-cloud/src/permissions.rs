//! The least-privilege grants a configuration needs (`liftoff permissions`).
//! SKELETON: filled in by the environments work.
