//! `liftoff launch --follow` / `--wait`: the run's events until it ends, then
//! an exit code a CI step or a Makefile can act on.

use crate::cmd::run::{BuildProgress, write_chunks};
use anyhow::Context;
use liftoff_client::{Client, RunEvent};
use liftoff_core::api::{ItemView, LogStream};
use liftoff_core::{ItemState, ItemTransition, Stage};
use std::io::IsTerminal;
use tokio::signal::unix::{SignalKind, signal};

/// The run was stopped (by `liftoff run stop`, the UI, or Ctrl-C here).
pub const EXIT_STOPPED: u8 = 122;
/// The run was preempted more often than it may be re-queued.
pub const EXIT_PREEMPTED: u8 = 123;
/// The run failed without an exit code of its own: before its command
/// started (the source, the build, the image, the agent) or when its agent
/// was lost past the item's attempts.
pub const EXIT_FAILED_BEFORE_START: u8 = 125;
/// Ctrl-C: the command stopped watching and left the run as it was.
pub const EXIT_INTERRUPTED: u8 = 130;

/// What is shown while watching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// The job's log (its stdout on stdout; its stderr and the agent's
    /// and the build's lines on stderr) and state changes.
    Log,
    /// The log on stderr, so stdout holds only the final JSON view.
    LogToStderr,
    /// State changes only.
    States,
}

/// Watches the run to its end. Returns its final view and the exit code;
/// `None` as the view when Ctrl-C left it running.
pub async fn watch(
    client: &Client,
    item_id: &str,
    run_id: &str,
    show: Show,
    stop_on_interrupt: bool,
) -> anyhow::Result<(Option<ItemView>, u8)> {
    let context = || format!("failed to follow run '{run_id}'");
    let mut interrupts = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let mut events = client.run_events(item_id, None);
    let mut build = BuildProgress::new(show == Show::Log && std::io::stderr().is_terminal());
    let mut stopping = false;
    loop {
        tokio::select! {
            event = events.next() => match event.with_context(context)? {
                Some(RunEvent::Log(chunk)) => {
                    if show != Show::States {
                        let to_stdout: &[LogStream] = if show == Show::Log { &[LogStream::Stdout] } else { &[] };
                        write_chunks(&mut build, std::slice::from_ref(&chunk), to_stdout)?;
                    }
                }
                Some(RunEvent::Transition(t)) => {
                    build.finish();
                    eprintln!("{}", transition_line(&t));
                }
                Some(RunEvent::End { .. }) | None => break,
            },
            _ = interrupts.recv() => {
                build.finish();
                if stopping {
                    eprintln!("interrupted again: no longer waiting for run {run_id} to stop");
                    return Ok((None, EXIT_INTERRUPTED));
                }
                if !(stop_on_interrupt || ask_to_stop(run_id, &mut interrupts).await?) {
                    eprintln!(
                        "run {run_id} goes on: follow it with `liftoff run logs {run_id} -f`, \
                         stop it with `liftoff run stop {run_id}`"
                    );
                    return Ok((None, EXIT_INTERRUPTED));
                }
                let item = client.stop_item(item_id).await.with_context(|| format!("failed to stop run '{run_id}'"))?;
                eprintln!("stopping run {run_id} ({}); Ctrl-C again to stop waiting", item.state);
                stopping = true;
                // The interrupted read may have been half way through an event:
                // open the stream again from the last one received.
                events = client.run_events(item_id, events.last_event_id().map(str::to_string));
            }
        }
    }
    build.finish();
    let item = client.get_item(item_id).await.with_context(|| format!("failed to read run '{run_id}'"))?;
    let code = exit_code(&item);
    eprintln!("{}", outcome_line(&item, code));
    Ok((Some(item), code))
}

/// Asks on the terminal whether to stop the run; `false` without a
/// terminal to ask on, or on a second Ctrl-C.
async fn ask_to_stop(run_id: &str, interrupts: &mut tokio::signal::unix::Signal) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("stop run {run_id}? [y/N] ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    });
    tokio::select! {
        line = answer => {
            let line = line.context("the prompt's reader failed")?.context("failed to read the answer")?;
            Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
        }
        _ = interrupts.recv() => {
            eprintln!();
            Ok(false)
        }
    }
}

/// The command's exit code for a run that ended: the job's own when its
/// command ran, else one of the `EXIT_*` codes.
pub fn exit_code(item: &ItemView) -> u8 {
    match item.state {
        ItemState::Finished => 0,
        ItemState::Failed => match (item.exit_code, item.stage) {
            (Some(code @ 1..=255), None | Some(Stage::Run)) => code as u8,
            _ => EXIT_FAILED_BEFORE_START,
        },
        ItemState::Stopped => EXIT_STOPPED,
        ItemState::Preempted => EXIT_PREEMPTED,
        // Not an end: the stream ended early, which `RunEvents` reports as an error.
        ItemState::Pending | ItemState::Claimed | ItemState::Running | ItemState::Stopping => 1,
    }
}

fn transition_line(t: &ItemTransition) -> String {
    let by = match &t.agent_id {
        Some(agent) => format!("agent {}", agent.get(..8).unwrap_or(agent)),
        None => t.cause.as_str().to_string(),
    };
    format!("run {}: {} ({by})", t.run_id, t.to)
}

fn outcome_line(item: &ItemView, code: u8) -> String {
    let mut line = format!("run {}: {}", item.run_id, item.state);
    if let Some(stage) = item.stage {
        line.push_str(&format!(" at {stage}"));
    }
    if let Some(reason) = &item.reason {
        line.push_str(&format!(": {reason}"));
    }
    line.push_str(&format!(" (exit {code})"));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(state: ItemState, exit_code: Option<i32>, stage: Option<Stage>) -> ItemView {
        let mut v: ItemView = serde_json::from_value(serde_json::json!({
            "id": "i", "run_id": "r", "entity": "e", "queue": "q", "state": "pending",
            "priority": "medium", "attempts": 1, "fence": 1, "created_at_ms": 0,
            "spec": {"job": "j", "project": "p", "source": {"type": "image", "image": "busybox"},
                "entrypoint": [], "args": [], "run_config": {}, "resource": "local-process", "resource_config": {}}
        }))
        .unwrap();
        (v.state, v.exit_code, v.stage) = (state, exit_code, stage);
        v
    }

    #[test]
    fn exit_codes_say_how_the_run_ended() {
        assert_eq!(exit_code(&item(ItemState::Finished, Some(0), None)), 0);
        assert_eq!(exit_code(&item(ItemState::Failed, Some(3), Some(Stage::Run))), 3);
        assert_eq!(exit_code(&item(ItemState::Failed, Some(137), None)), 137);
        // a builder's exit code is not the job's
        assert_eq!(exit_code(&item(ItemState::Failed, Some(1), Some(Stage::Build))), EXIT_FAILED_BEFORE_START);
        assert_eq!(exit_code(&item(ItemState::Failed, None, Some(Stage::Agent))), EXIT_FAILED_BEFORE_START);
        assert_eq!(exit_code(&item(ItemState::Failed, Some(-1), Some(Stage::Run))), EXIT_FAILED_BEFORE_START);
        assert_eq!(exit_code(&item(ItemState::Stopped, Some(143), None)), EXIT_STOPPED);
        assert_eq!(exit_code(&item(ItemState::Preempted, None, None)), EXIT_PREEMPTED);
    }
}
