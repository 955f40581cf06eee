//! One file per resource of the API.

pub mod agents;
pub mod blobs;
pub mod builds;
pub mod events;
pub mod items;
pub mod jobs;
pub mod keys;
pub mod leases;
pub mod logs;
pub mod meta;
pub mod queues;
