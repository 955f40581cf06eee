//! How the UI names an agent wherever it shows one (queue rows, a run's
//! facts and timeline, the queues list): its host and a short id, linked to
//! its row on the agents page, never a bare UUID (`agent.html`).

use crate::app::AppState;
use std::collections::HashMap;

/// An agent as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLabel {
    pub id: String,
    pub host: String,
}

impl AgentLabel {
    /// The id's first 8 characters: enough to tell one host's agents apart.
    pub fn short(&self) -> &str {
        self.id.get(..8).unwrap_or(&self.id)
    }
}

/// The entity's agents' hosts by id: read once for a page, and kept by a
/// live stream, which reads an agent it has not met (registered since) once.
pub struct AgentNames {
    entity: String,
    hosts: HashMap<String, String>,
}

impl AgentNames {
    /// Every agent of the entity, read now.
    pub async fn load(st: &AppState, entity: &str) -> Result<Self, liftoff_store::StoreError> {
        let agents = st.store.list_agents(entity).await?;
        Ok(Self { entity: entity.to_string(), hosts: agents.into_iter().map(|a| (a.id, a.hostname)).collect() })
    }

    /// None read yet: each is read when first asked for.
    pub fn lazy(entity: &str) -> Self {
        Self { entity: entity.to_string(), hosts: HashMap::new() }
    }

    /// The agent with this id, read from the store if not known yet; an
    /// agent the store does not have (or cannot give now) shows its id alone.
    pub async fn label(&mut self, st: &AppState, id: &str) -> AgentLabel {
        if !self.hosts.contains_key(id) {
            match st.store.get_agent(&self.entity, id).await {
                Ok(Some(a)) => {
                    self.hosts.insert(a.id, a.hostname);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(agent = %id, error = %e, "an agent's host could not be read for the UI"),
            }
        }
        self.known(id)
    }

    /// The agent with this id as far as already read.
    pub fn known(&self, id: &str) -> AgentLabel {
        let host = self.hosts.get(id).cloned().unwrap_or_else(|| "unknown host".to_string());
        AgentLabel { id: id.to_string(), host }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_is_the_host_and_the_ids_first_eight_characters() {
        let mut names = AgentNames::lazy("e");
        names.hosts.insert("0123456789abcdef".into(), "gpu-7".into());
        let l = names.known("0123456789abcdef");
        assert_eq!((l.host.as_str(), l.short()), ("gpu-7", "01234567"));
        assert_eq!(names.known("abc").host, "unknown host");
        assert_eq!(names.known("abc").short(), "abc");
    }
}
