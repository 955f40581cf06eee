//! Faithful fakes of services no real server can be had for here, each a
//! library module (for tests, in process) and a binary (for people):
//! `cargo run -p liftoff-testkit --bin sagemaker-fake` / `--bin vertex-fake`.
//! They speak the services' wire protocols, so the production clients are
//! driven exactly as the clouds would drive them. See the README. `gcp` is
//! a token endpoint and a GCS fake (no GCS emulator installable here speaks
//! the XML API object_store uses): a library module only.

mod changes;
pub mod gcp;
pub mod kubernetes;
pub mod sagemaker;
pub mod vertex;
