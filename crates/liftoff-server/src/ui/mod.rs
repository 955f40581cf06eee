//! The web UI served at `/`: server-rendered pages (askama templates in
//! `templates/`), htmx for the live parts, no inline script (see `assets`).

pub mod agent_names;
pub mod agents;
pub mod assets;
pub mod jobs;
pub mod live;
pub mod live_socket;
pub mod page;
pub mod queues;
pub mod routes;
pub mod runs;
pub mod session;
