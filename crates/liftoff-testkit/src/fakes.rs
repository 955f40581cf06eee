//! Faithful fakes of services no real server can be had for here, each a
//! library module (for tests, in process) and a binary (for people):
//! `cargo run -p liftoff-testkit --bin sagemaker-fake` / `--bin vertex-fake`.
//! They speak the services' wire protocols, so the production clients are
//! driven exactly as the clouds would drive them. See the README.

mod changes;
pub mod kubernetes;
pub mod sagemaker;
pub mod vertex;
