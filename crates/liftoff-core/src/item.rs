//! The run-queue item state machine. Every state change of an item, in every
//! store, goes through [`Item::apply`]: it is the one writer of terminal states.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Lifecycle of a run-queue item (and of the run it becomes).
///
/// `pending → claimed → running → finished | failed | stopped | preempted`,
/// with `stopping` between a stop request and `stopped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    Pending,
    Claimed,
    Running,
    Stopping,
    Finished,
    Failed,
    Stopped,
    Preempted,
}

impl ItemState {
    pub const ALL: [ItemState; 8] = [
        Self::Pending,
        Self::Claimed,
        Self::Running,
        Self::Stopping,
        Self::Finished,
        Self::Failed,
        Self::Stopped,
        Self::Preempted,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Finished | Self::Failed | Self::Stopped | Self::Preempted)
    }

    /// States in which an agent holds the item under a lease.
    pub fn is_leased(self) -> bool {
        matches!(self, Self::Claimed | Self::Running | Self::Stopping)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Claimed => "claimed",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::Preempted => "preempted",
        }
    }
}

impl fmt::Display for ItemState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ItemState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| format!("unknown item state '{s}'"))
    }
}

/// Something that happens to an item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum ItemEvent {
    /// An agent claimed the item (the store issues a new fencing token).
    Claim,
    /// The agent started the run.
    Start,
    /// The run exited with code 0.
    Finish,
    /// The run, or the agent's preparation of it, failed.
    Fail {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::rules::int::opt_i32")]
        exit_code: Option<i32>,
        /// Where it failed; `agent` when not given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<Stage>,
    },
    /// A user asked for the item to be stopped.
    RequestStop,
    /// The agent stopped the run.
    Stopped {
        #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::rules::int::opt_i32")]
        exit_code: Option<i32>,
    },
    /// The resource preempted the run.
    Preempt,
    /// The holder's lease ran out without a heartbeat.
    LeaseExpired,
    /// The holder gives back an item it claimed but never started (it is
    /// shutting down, or the claim never reached it): back to its queue,
    /// costing no attempt.
    Release,
}

impl ItemEvent {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Claim => "claim",
            Self::Start => "start",
            Self::Finish => "finish",
            Self::Fail { .. } => "fail",
            Self::RequestStop => "request-stop",
            Self::Stopped { .. } => "stopped",
            Self::Preempt => "preempt",
            Self::LeaseExpired => "lease-expired",
            Self::Release => "release",
        }
    }
}

/// Where in its life a run failed or warned, as the reference reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Claiming, preparing the source, checking the spec, talking to the server.
    Agent,
    /// Pulling or building the image.
    Build,
    /// The run itself: starting it, or its exit.
    Run,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Build => "build",
            Self::Run => "run",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Agent, Self::Build, Self::Run]
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown stage '{s}': expected agent, build or run"))
    }
}

/// A preempted run is re-queued (same item, same run id) at most this many times.
pub const MAX_RESUMES: u32 = 5;

/// Returned when an event does not apply to the item's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot apply '{event}' to an item in state '{state}'")]
pub struct TransitionError {
    pub state: ItemState,
    pub event: &'static str,
}

/// The state-machine view of an item: what [`Item::apply`] reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub state: ItemState,
    /// How many times a lease on this item has expired.
    pub attempts: u32,
    /// Grows by one on every claim; writes carrying an older value are stale.
    pub fence: i64,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    /// Where the run failed, when it did.
    pub stage: Option<Stage>,
    /// How many times the run was preempted and re-queued (at most [`MAX_RESUMES`]).
    pub resumes: u32,
}

impl Item {
    pub fn new() -> Self {
        Self {
            state: ItemState::Pending,
            attempts: 0,
            fence: 0,
            exit_code: None,
            reason: None,
            stage: None,
            resumes: 0,
        }
    }

    /// Applies `event`. On error the item is unchanged.
    ///
    /// `max_attempts` bounds lease expiries: the expiry that reaches it fails
    /// the item instead of re-queueing it. A preemption re-queues the item
    /// (its run resumes) until it has been re-queued [`MAX_RESUMES`] times.
    ///
    /// Every transition out of a held state (an outcome, a lease expiry, a
    /// preemption, a stop) bumps the fencing token, so that whatever the old
    /// holder still sends (a late log chunk, a retried event, its run key) is
    /// refused as stale, whether or not the item is claimed again.
    pub fn apply(&mut self, event: &ItemEvent, max_attempts: u32) -> Result<(), TransitionError> {
        let held_before = self.state.is_leased();
        self.apply_state(event, max_attempts)?;
        if held_before && !self.state.is_leased() {
            self.fence += 1;
        }
        Ok(())
    }

    fn apply_state(&mut self, event: &ItemEvent, max_attempts: u32) -> Result<(), TransitionError> {
        use ItemState::*;
        let refuse = || TransitionError { state: self.state, event: event.name() };
        match (self.state, event) {
            (Pending, ItemEvent::Claim) => {
                self.state = Claimed;
                self.fence += 1;
            }
            (Claimed, ItemEvent::Start) => self.state = Running,
            (Running | Stopping, ItemEvent::Finish) => {
                self.state = Finished;
                self.exit_code = Some(0);
            }
            (Claimed | Running | Stopping, ItemEvent::Fail { reason, exit_code, stage }) => {
                self.state = Failed;
                self.reason = Some(reason.clone());
                self.exit_code = *exit_code;
                self.stage = Some(stage.unwrap_or(Stage::Agent));
            }
            (Pending, ItemEvent::RequestStop) => {
                self.state = Stopped;
                self.reason = Some("stopped before it was claimed".into());
            }
            (Claimed | Running, ItemEvent::RequestStop) => self.state = Stopping,
            (Stopping, ItemEvent::RequestStop) => {}
            (Claimed | Running | Stopping, ItemEvent::Stopped { exit_code }) => {
                self.state = Stopped;
                self.exit_code = *exit_code;
            }
            // A user's stop wins over a resume.
            (Stopping, ItemEvent::Preempt) => self.state = Stopped,
            (Claimed | Running, ItemEvent::Preempt) if self.resumes < MAX_RESUMES => {
                self.resumes += 1;
                self.state = Pending;
                self.reason =
                    Some(format!("preempted; re-queued to resume (resume {} of {MAX_RESUMES})", self.resumes));
            }
            (Claimed | Running, ItemEvent::Preempt) => {
                self.state = Preempted;
                self.reason = Some(format!("preempted after {MAX_RESUMES} resumes; not re-queued again"));
            }
            (Claimed, ItemEvent::Release) => {
                self.state = Pending;
                self.reason = Some("released unstarted by its agent; re-queued".into());
            }
            (Stopping, ItemEvent::Release) => {
                self.state = Stopped;
                self.reason = Some("stopped before it started".into());
            }
            (Stopping, ItemEvent::LeaseExpired) => {
                self.state = Stopped;
                self.reason = Some("the agent's lease expired while the item was stopping".into());
            }
            (Claimed | Running, ItemEvent::LeaseExpired) => {
                self.attempts += 1;
                if self.attempts >= max_attempts {
                    self.state = Failed;
                    self.stage = Some(Stage::Agent);
                    self.reason = Some(format!(
                        "lease expired {} times without a heartbeat from the agent; giving up",
                        self.attempts
                    ));
                } else {
                    self.state = Pending;
                }
            }
            _ => return Err(refuse()),
        }
        Ok(())
    }
}

impl Default for Item {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = ItemEvent> {
        prop_oneof![
            Just(ItemEvent::Claim),
            Just(ItemEvent::Start),
            Just(ItemEvent::Finish),
            Just(ItemEvent::Fail { reason: "x".into(), exit_code: Some(1), stage: Some(Stage::Run) }),
            Just(ItemEvent::RequestStop),
            Just(ItemEvent::Stopped { exit_code: None }),
            Just(ItemEvent::Preempt),
            Just(ItemEvent::LeaseExpired),
            Just(ItemEvent::Release),
        ]
    }

    proptest! {
        #[test]
        fn terminal_states_are_never_left(events in proptest::collection::vec(event(), 0..64), max in 1u32..5) {
            let mut item = Item::new();
            let mut first_terminal: Option<ItemState> = None;
            let mut last_fence = 0;
            for ev in &events {
                let before = item.clone();
                match item.apply(ev, max) {
                    Ok(()) => {
                        // a terminal state, once reached, accepts no event at all
                        prop_assert!(!before.state.is_terminal(), "left terminal {:?} on {:?}", before.state, ev);
                    }
                    Err(e) => {
                        prop_assert_eq!(&item, &before, "a refused event changed the item");
                        prop_assert_eq!(e.state, before.state);
                    }
                }
                if item.state.is_terminal() {
                    match first_terminal {
                        None => first_terminal = Some(item.state),
                        Some(t) => prop_assert_eq!(t, item.state, "item reached two terminal states"),
                    }
                }
                prop_assert!(item.fence >= last_fence, "fence went backwards");
                if before.state.is_leased() && !item.state.is_leased() {
                    prop_assert!(item.fence > before.fence, "left held state {:?} on {:?} without a new fence", before.state, ev);
                }
                last_fence = item.fence;
                prop_assert!(item.attempts <= max);
                prop_assert!(item.resumes <= MAX_RESUMES);
                prop_assert_eq!(item.stage.is_some(), item.state == ItemState::Failed);
            }
        }
    }

    #[test]
    fn happy_path() {
        let mut i = Item::new();
        for ev in [ItemEvent::Claim, ItemEvent::Start, ItemEvent::Finish] {
            i.apply(&ev, 3).unwrap();
        }
        assert_eq!(i.state, ItemState::Finished);
        assert_eq!(i.exit_code, Some(0));
        assert_eq!(i.fence, 2, "the claim and the outcome each take a new fence");
    }

    #[test]
    fn lease_expiry_requeues_until_limit_then_fails() {
        let mut i = Item::new();
        for round in 1..=3 {
            i.apply(&ItemEvent::Claim, 3).unwrap();
            assert_eq!(i.fence, 2 * round - 1);
            i.apply(&ItemEvent::LeaseExpired, 3).unwrap();
            assert_eq!(i.fence, 2 * round, "an expiry fences the old holder out");
        }
        assert_eq!(i.state, ItemState::Failed);
        assert_eq!(i.attempts, 3);
        assert!(i.reason.as_deref().unwrap().contains("lease expired 3 times"));
    }

    #[test]
    fn stop_before_claim_and_while_running() {
        let mut i = Item::new();
        i.apply(&ItemEvent::RequestStop, 3).unwrap();
        assert_eq!(i.state, ItemState::Stopped);
        let mut j = Item::new();
        j.apply(&ItemEvent::Claim, 3).unwrap();
        j.apply(&ItemEvent::Start, 3).unwrap();
        j.apply(&ItemEvent::RequestStop, 3).unwrap();
        assert_eq!(j.state, ItemState::Stopping);
        j.apply(&ItemEvent::Stopped { exit_code: Some(143) }, 3).unwrap();
        assert_eq!(j.state, ItemState::Stopped);
        assert!(j.apply(&ItemEvent::Finish, 3).is_err());
    }
}

#[cfg(test)]
mod preemption_tests {
    use super::*;

    #[test]
    fn a_release_requeues_an_unstarted_claim_at_no_cost() {
        let mut i = Item::new();
        i.apply(&ItemEvent::Claim, 3).unwrap();
        i.apply(&ItemEvent::Release, 3).unwrap();
        assert_eq!((i.state, i.attempts, i.fence), (ItemState::Pending, 0, 2));
        i.apply(&ItemEvent::Claim, 3).unwrap();
        i.apply(&ItemEvent::Start, 3).unwrap();
        assert!(i.apply(&ItemEvent::Release, 3).is_err(), "a started run is never given back to run twice");
    }

    #[test]
    fn preemption_requeues_five_times_then_ends_preempted() {
        let mut i = Item::new();
        for resume in 1..=MAX_RESUMES {
            i.apply(&ItemEvent::Claim, 3).unwrap();
            i.apply(&ItemEvent::Start, 3).unwrap();
            i.apply(&ItemEvent::Preempt, 3).unwrap();
            assert_eq!((i.state, i.resumes), (ItemState::Pending, resume));
        }
        i.apply(&ItemEvent::Claim, 3).unwrap();
        i.apply(&ItemEvent::Preempt, 3).unwrap();
        assert_eq!((i.state, i.resumes), (ItemState::Preempted, MAX_RESUMES));
        assert_eq!(i.attempts, 0, "a preemption is not a failed attempt");
    }

    #[test]
    fn stop_wins_over_preemption_and_failures_carry_a_stage() {
        let mut i = Item::new();
        i.apply(&ItemEvent::Claim, 3).unwrap();
        i.apply(&ItemEvent::RequestStop, 3).unwrap();
        i.apply(&ItemEvent::Preempt, 3).unwrap();
        assert_eq!(i.state, ItemState::Stopped);
        let mut j = Item::new();
        j.apply(&ItemEvent::Claim, 3).unwrap();
        j.apply(&ItemEvent::Fail { reason: "pull".into(), exit_code: None, stage: Some(Stage::Build) }, 3).unwrap();
        assert_eq!(j.stage, Some(Stage::Build));
        let mut k = Item::new();
        k.apply(&ItemEvent::Claim, 3).unwrap();
        k.apply(&ItemEvent::Fail { reason: "x".into(), exit_code: None, stage: None }, 3).unwrap();
        assert_eq!(k.stage, Some(Stage::Agent));
    }
}
