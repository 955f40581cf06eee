//! One module per subcommand.

pub mod agent;
pub mod config;
pub mod doctor;
pub mod entity;
pub mod image;
pub mod job;
pub mod key;
pub mod launch;
pub mod permissions;
pub mod queue;
pub mod quickstart;
pub mod run;
pub mod server;
