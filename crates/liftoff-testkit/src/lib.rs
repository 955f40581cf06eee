//! Test support for Liftoff's suites. Only re-exports: one file a concept.
//!
//! - [`component`]: a test that needs a component (a Docker engine, a
//!   registry, an emulator, root) gets it or skips; under `CI` a skip fails
//!   the test, and every skip is recorded for `scripts/test.sh` to count.
//! - [`docker_config`]: a docker config directory with one registry login.
//! - [`postgres`]: a fresh database on the test PostgreSQL server.
//! - [`processes`]: process trees tied to a test's lifetime (killed on drop,
//!   pass or fail), and the processes found by a marker in their environment.
//! - [`fakes`]: faithful fakes of SageMaker and Vertex AI (+ Cloud Logging).
//! - [`proxy`]: a TCP proxy that records what clients send and can hold a
//!   request (fault injection between two steps of a client).
//! - [`python_wheel`]: a pure-Python wheel made with the host's Python, for
//!   offline installs in test builds.

pub mod component;
pub mod docker_config;
pub mod fakes;
pub mod postgres;
pub mod processes;
pub mod proxy;
pub mod python_wheel;

pub use component::{is_root, required_env, skip, under_ci};
pub use docker_config::write_docker_config;
pub use postgres::fresh_postgres_database;
pub use processes::{ProcessGroup, is_alive, processes_with_env, wait_until_none_left};
pub use proxy::{RecordingProxy, Upstream};
