//! An item's history: every state change, when and why it happened, and the
//! positions that let an event stream resume exactly where a client left it.

use crate::item::{ItemEvent, ItemState, Stage};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The event name of an item's first entry: it was launched onto its queue.
pub const LAUNCH_EVENT: &str = "launch";

/// Who made a state change happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TransitionCause {
    /// A user: a launch or a stop request.
    User,
    /// The agent holding the item (claim, start, outcome, preemption, release).
    Agent,
    /// The server's lease reaper: the holder's lease ran out.
    LeaseExpiry,
}

impl TransitionCause {
    /// The cause follows from the event: only users launch and ask to stop,
    /// only the reaper applies `LeaseExpired`, and everything else is
    /// reported by (or, for a claim or release, asked for by) an agent.
    pub fn of(event: &ItemEvent) -> Self {
        match event {
            ItemEvent::RequestStop => Self::User,
            ItemEvent::LeaseExpired => Self::LeaseExpiry,
            ItemEvent::Claim
            | ItemEvent::Start
            | ItemEvent::Finish
            | ItemEvent::Fail { .. }
            | ItemEvent::Stopped { .. }
            | ItemEvent::Preempt
            | ItemEvent::Release => Self::Agent,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Agent => "agent",
            Self::LeaseExpiry => "lease-expiry",
        }
    }
}

impl FromStr for TransitionCause {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::User, Self::Agent, Self::LeaseExpiry]
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown transition cause '{s}'"))
    }
}

/// One entry of an item's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemTransition {
    pub item_id: String,
    pub run_id: String,
    pub queue: String,
    /// 1, 2, ... within the item.
    pub seq: i64,
    /// The change's number within its queue, given once it is committed
    /// (when a queue stream first looks); absent until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_seq: Option<i64>,
    /// Server time of the change, in milliseconds since the epoch.
    pub at_ms: i64,
    /// `launch`, or the name of the [`ItemEvent`] applied.
    pub event: String,
    /// The state before; absent for the launch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ItemState>,
    pub to: ItemState,
    pub cause: TransitionCause,
    /// The agent that held the item (for a claim: that claimed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The holder's fencing token, when the agent caused the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// How many log chunks the run had when this happened: in the run's
    /// stream it comes after chunk `log_seq - 1` and before chunk `log_seq`.
    pub log_seq: i64,
}

/// Where a client stands in a run's event stream (the SSE event id
/// `<transitions>.<log>`): the last transition it got (its `seq`, 0 for
/// none) and the next log chunk it needs. Both counters only grow and each
/// names its own sequence, so a reconnect with the last id it saw gets
/// exactly what it missed, whatever the interleaving.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStreamPosition {
    pub transitions: i64,
    pub log: i64,
}

impl fmt::Display for RunStreamPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.transitions, self.log)
    }
}

/// One counter of an event id: 1 to 18 ASCII digits (an `i64` always holds
/// them), nothing else: no sign, no space, no other script's digits.
fn event_counter(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Exactly the ids [`crate::rules::RUN_EVENT_ID`] admits (the document
/// states that pattern for `Last-Event-ID`; the rules' tests hold the two
/// to each other), so a client sending an id the document admits is never
/// refused.
impl FromStr for RunStreamPosition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("event id '{s}' is not <transitions>.<log> (two numbers of 1 to 18 digits)");
        let (t, l) = s.split_once('.').ok_or_else(bad)?;
        let (transitions, log) = (event_counter(t).ok_or_else(bad)?, event_counter(l).ok_or_else(bad)?);
        Ok(Self { transitions, log })
    }
}

/// A queue stream's event id (the `queue_seq` of the last change a client
/// got): exactly the ids [`crate::rules::QUEUE_EVENT_ID`] admits.
pub fn queue_event_number(id: &str) -> Result<i64, String> {
    event_counter(id).ok_or_else(|| format!("event id '{id}' is not a queue event number (1 to 18 digits)"))
}

/// The `data` of a run stream's last event, `end`: the state the run ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunStreamEnd {
    pub state: ItemState,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_stream_positions_round_trip_and_refuse_garbage() {
        let p = RunStreamPosition { transitions: 3, log: 17 };
        assert_eq!(p.to_string(), "3.17");
        assert_eq!("3.17".parse::<RunStreamPosition>().unwrap(), p);
        for bad in ["", "3", "3.", ".4", "a.b", "-1.0", "+1.0", " 1.2", "1.2 ", "1.2.3", "1234567890123456789.0"] {
            assert!(bad.parse::<RunStreamPosition>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn causes_follow_from_events() {
        assert_eq!(TransitionCause::of(&ItemEvent::RequestStop), TransitionCause::User);
        assert_eq!(TransitionCause::of(&ItemEvent::LeaseExpired), TransitionCause::LeaseExpiry);
        assert_eq!(TransitionCause::of(&ItemEvent::Release), TransitionCause::Agent);
        assert_eq!(TransitionCause::of(&ItemEvent::Finish), TransitionCause::Agent);
        assert_eq!("lease-expiry".parse::<TransitionCause>().unwrap(), TransitionCause::LeaseExpiry);
    }
}
