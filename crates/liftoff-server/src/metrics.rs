//! `/metrics`: this process's counters and histograms (prometheus-client),
//! and gauges read from the store at each scrape.
//!
//! Counters and histograms count what *this* server process saw, as is usual
//! for Prometheus (sum them over the servers that share one database). The
//! gauges (`liftoff_queue_*` but `liftoff_queue_wait_seconds`,
//! `liftoff_runs_running`, `liftoff_agents`) come from the database, so they
//! are the same on every server sharing it: aggregate them with `max`, not
//! `sum`. No label carries a run or item id.

use liftoff_core::api::{AgentStatus, BuildHow, ItemView};
use liftoff_core::{ItemState, Stage};
use liftoff_store::{Store, StoreError};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// An agent whose last heartbeat is older than this (agents beat every 5 s
/// by default) counts as `lost`, whatever status it last reported.
pub const AGENT_LOST_AFTER: Duration = Duration::from_secs(60);

/// Claims remembered for `liftoff_claim_to_running_seconds` beyond this many
/// are dropped once older than an hour (items claimed and never started).
const MAX_PENDING_STARTS: usize = 10_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    entity: String,
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunnerLabels {
    runner: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunEndLabels {
    entity: String,
    queue: String,
    runner: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    /// The matched route template (`/api/v1/entities/{entity}/claims`), never the raw path.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DbLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    how: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueStateLabels {
    entity: String,
    queue: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    status: &'static str,
}

/// Histogram buckets: `count` buckets from `start`, each `factor` times the last.
#[derive(Clone)]
struct Buckets {
    start: f64,
    factor: f64,
    count: u16,
}

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(self.start, self.factor, self.count))
    }
}

type Histograms<L> = Family<L, Histogram, Buckets>;

fn histograms<L: Clone + std::hash::Hash + Eq>(start: f64, factor: f64, count: u16) -> Histograms<L> {
    Family::new_with_constructor(Buckets { start, factor, count })
}

/// What this process counts, and the registry that encodes it.
pub struct Metrics {
    registry: Registry,
    items_enqueued: Counter,
    items_claimed: Counter,
    claims_empty: Counter,
    lease_expiries: Counter,
    stale_writes: Counter,
    log_chunks: Counter,
    /// Event streams (SSE) open on this server.
    pub event_streams: Gauge,
    queue_wait: Histograms<QueueLabels>,
    claim_to_running: Histograms<RunnerLabels>,
    runs_finished: Family<RunEndLabels, Counter>,
    run_duration: Histograms<RunEndLabels>,
    item_failures: Family<StageLabels, Counter>,
    http_duration: Histograms<HttpLabels>,
    db_duration: Histograms<DbLabels>,
    builds: Family<BuildLabels, Counter>,
    build_duration: Histograms<BuildLabels>,
    /// Claim time (server clock, ms) by item id, with the claim's fence, until
    /// the item's start event: for `liftoff_claim_to_running_seconds`.
    claimed_at: Mutex<HashMap<String, (i64, i64)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("liftoff");
        let m = Self {
            items_enqueued: Counter::default(),
            items_claimed: Counter::default(),
            claims_empty: Counter::default(),
            lease_expiries: Counter::default(),
            stale_writes: Counter::default(),
            log_chunks: Counter::default(),
            event_streams: Gauge::default(),
            queue_wait: histograms(0.05, 4.0, 10),
            claim_to_running: histograms(0.1, 3.0, 10),
            runs_finished: Family::default(),
            run_duration: histograms(1.0, 4.0, 10),
            item_failures: Family::default(),
            http_duration: histograms(0.001, 4.0, 10),
            db_duration: histograms(0.0005, 4.0, 10),
            builds: Family::default(),
            build_duration: histograms(0.5, 4.0, 10),
            claimed_at: Mutex::default(),
            registry: Registry::default(),
        };
        let this = " (this server process)";
        r.register("items_enqueued", format!("Run-queue items enqueued{this}"), m.items_enqueued.clone());
        r.register("items_claimed", format!("Run-queue items claimed by agents{this}"), m.items_claimed.clone());
        r.register("claims_empty", format!("Claim requests that returned no item{this}"), m.claims_empty.clone());
        r.register(
            "lease_expiries",
            format!("Leases that ran out without a renewal, expired by this server's reaper{this}"),
            m.lease_expiries.clone(),
        );
        r.register("stale_writes", format!("Writes refused for a stale fencing token{this}"), m.stale_writes.clone());
        r.register("log_chunks", format!("Log chunks accepted{this}"), m.log_chunks.clone());
        r.register("event_streams", format!("Event streams (SSE) open{this}"), m.event_streams.clone());
        r.register_with_unit(
            "queue_wait",
            format!("Time from enqueue to claim, per claim; a re-queued item counts from its first enqueue{this}"),
            Unit::Seconds,
            m.queue_wait.clone(),
        );
        r.register_with_unit(
            "claim_to_running",
            format!("Time from claim to the agent's start event, by runner (the queue's resource type){this}"),
            Unit::Seconds,
            m.claim_to_running.clone(),
        );
        r.register(
            "runs_finished",
            format!("Items that reached a final state, by result (finished, failed, stopped, preempted){this}"),
            m.runs_finished.clone(),
        );
        r.register_with_unit(
            "run_duration",
            format!("Time from a run's start event to its end, for runs that started{this}"),
            Unit::Seconds,
            m.run_duration.clone(),
        );
        r.register(
            "queue_item_failures",
            format!("Items that failed, by stage (agent, build, run){this}"),
            m.item_failures.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            format!(
                "HTTP request durations until the response head, by method, route template and status; \
                 claims long-poll{this}"
            ),
            Unit::Seconds,
            m.http_duration.clone(),
        );
        r.register_with_unit(
            "db_transaction_duration",
            format!("Store calls that are one write transaction (pool wait included), by operation{this}"),
            Unit::Seconds,
            m.db_duration.clone(),
        );
        r.register(
            "builds",
            format!("Run images recorded by agents, by how they got them (built, found, waited){this}"),
            m.builds.clone(),
        );
        r.register_with_unit(
            "build_duration",
            format!("Time agents spent getting a run's image, as they recorded it, by how{this}"),
            Unit::Seconds,
            m.build_duration.clone(),
        );
        // Series of the finite label sets exist from the start, so that
        // `rate()` and `increase()` see their first increment.
        for stage in [Stage::Agent, Stage::Build, Stage::Run] {
            let _ = m.item_failures.get_or_create(&StageLabels { stage: stage.as_str() });
        }
        for how in [BuildHow::Built, BuildHow::Found, BuildHow::Waited, BuildHow::Appended].map(|h| h.as_str()) {
            let _ = m.builds.get_or_create(&BuildLabels { how });
            let _ = m.build_duration.get_or_create(&BuildLabels { how });
        }
        let info = Family::<VersionLabels, Gauge>::default();
        info.get_or_create(&VersionLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        r.register("build_info", "The liftoff version this server runs (value 1)", info);
        Self { registry: r, ..m }
    }

    pub fn enqueued(&self) {
        self.items_enqueued.inc();
    }

    pub fn claims_empty(&self) {
        self.claims_empty.inc();
    }

    pub fn stale_write(&self) {
        self.stale_writes.inc();
    }

    pub fn log_chunk(&self) {
        self.log_chunks.inc();
    }

    pub fn lease_expiries(&self, count: u64) {
        self.lease_expiries.inc_by(count);
    }

    /// An agent claimed `item` (the view after the claim) at `now_ms`.
    pub fn claimed(&self, item: &ItemView, now_ms: i64) {
        self.items_claimed.inc();
        self.queue_wait.get_or_create(&queue_labels(item)).observe(seconds_between(item.created_at_ms, now_ms));
        let mut pending = self.claimed_at.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() >= MAX_PENDING_STARTS {
            let hour_ago = now_ms - 3_600_000;
            pending.retain(|_, (_, at)| *at > hour_ago);
        }
        pending.insert(item.id.clone(), (item.fence, now_ms));
    }

    /// `item` (the view after a transition) changed state: a start, an end, or
    /// a return to its queue.
    pub fn transitioned(&self, item: &ItemView) {
        let claimed = self.claimed_at.lock().unwrap_or_else(|p| p.into_inner()).remove(&item.id);
        let runner = item.spec.resource.as_str();
        match item.state {
            ItemState::Running => {
                if let (Some((fence, at)), Some(started)) = (claimed, item.started_at_ms)
                    && fence == item.fence
                {
                    self.claim_to_running.get_or_create(&RunnerLabels { runner }).observe(seconds_between(at, started));
                }
            }
            state if state.is_terminal() => {
                let labels = RunEndLabels {
                    entity: item.entity.clone(),
                    queue: item.queue.clone(),
                    runner,
                    result: state.as_str(),
                };
                self.runs_finished.get_or_create(&labels).inc();
                if let (Some(start), Some(end)) = (item.started_at_ms, item.ended_at_ms) {
                    self.run_duration.get_or_create(&labels).observe(seconds_between(start, end));
                }
                if state == ItemState::Failed {
                    let stage = item.stage.unwrap_or(Stage::Agent).as_str();
                    self.item_failures.get_or_create(&StageLabels { stage }).inc();
                }
            }
            _ => {}
        }
    }

    /// An agent recorded how it got a run's image.
    pub fn build_recorded(&self, how: BuildHow, seconds: f64) {
        let how = how.as_str();
        self.builds.get_or_create(&BuildLabels { how }).inc();
        self.build_duration.get_or_create(&BuildLabels { how }).observe(seconds);
    }

    pub fn http_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let labels = HttpLabels { method: method.to_string(), route: route.to_string(), status };
        self.http_duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Times one store call that is a write transaction; observed when dropped.
    pub fn db_timer(&self, op: &'static str) -> DbTimer {
        DbTimer { histogram: self.db_duration.get_or_create_owned(&DbLabels { op }), started: Instant::now() }
    }

    /// The exposition: OpenMetrics text when `openmetrics`, else the
    /// Prometheus text format 0.0.4 (what `promtool check metrics` reads).
    pub async fn render(&self, store: &dyn Store, openmetrics: bool) -> Result<String, StoreError> {
        let gauges = store_gauges(store, liftoff_store::now_ms()).await?;
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &gauges);
        if openmetrics {
            let _ = prometheus_client::encoding::text::encode_eof(&mut out);
            Ok(out)
        } else {
            Ok(to_text_0_0_4(&out))
        }
    }
}

/// Observes the time since it was made when dropped.
pub struct DbTimer {
    histogram: Histogram,
    started: Instant,
}

impl Drop for DbTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

fn queue_labels(item: &ItemView) -> QueueLabels {
    QueueLabels { entity: item.entity.clone(), queue: item.queue.clone() }
}

fn seconds_between(from_ms: i64, to_ms: i64) -> f64 {
    (to_ms - from_ms).max(0) as f64 / 1000.0
}

/// The gauges read from the store, in a registry made for this scrape.
async fn store_gauges(store: &dyn Store, now_ms: i64) -> Result<Registry, StoreError> {
    let global = " (from the database: the same on every server sharing it)";
    let queues = store.queue_stats().await?;
    let agents = store.agent_stats().await?;
    let items = Family::<QueueStateLabels, Gauge>::default();
    let oldest = Family::<QueueLabels, Gauge<f64, AtomicU64>>::default();
    let polling = Family::<QueueLabels, Gauge>::default();
    let running = Gauge::<i64>::default();
    let mut live_agents: HashMap<(&str, &str), i64> = HashMap::new();
    let lost_before = now_ms - AGENT_LOST_AFTER.as_millis() as i64;
    let by_status = Family::<AgentLabels, Gauge>::default();
    for status in ["polling", "running", "stopped", "lost"] {
        by_status.get_or_create(&AgentLabels { status }).set(0);
    }
    for a in &agents {
        let status = match a.status {
            AgentStatus::Stopped => "stopped",
            _ if a.heartbeat_at_ms < lost_before => "lost",
            AgentStatus::Polling => "polling",
            AgentStatus::Running => "running",
        };
        by_status.get_or_create(&AgentLabels { status }).inc();
        if matches!(status, "polling" | "running") && !a.stop_polling {
            for q in &a.queues {
                *live_agents.entry((a.entity.as_str(), q.as_str())).or_default() += 1;
            }
        }
    }
    for q in &queues {
        for state in ItemState::ALL {
            let n = q.items.get(&state).copied().unwrap_or(0);
            let labels = QueueStateLabels { entity: q.entity.clone(), queue: q.queue.clone(), state: state.as_str() };
            items.get_or_create(&labels).set(n);
            if state == ItemState::Running {
                running.inc_by(n);
            }
        }
        let labels = QueueLabels { entity: q.entity.clone(), queue: q.queue.clone() };
        let age = q.oldest_pending_created_ms.map_or(0.0, |t| seconds_between(t, now_ms));
        oldest.get_or_create(&labels).set(age);
        polling
            .get_or_create(&labels)
            .set(live_agents.get(&(q.entity.as_str(), q.queue.as_str())).copied().unwrap_or(0));
    }
    let mut r = Registry::with_prefix("liftoff");
    r.register("queue_items", format!("Items per queue and state{global}"), items);
    r.register_with_unit(
        "queue_oldest_item_age",
        format!("Age of the queue's oldest pending item since its first enqueue, 0 when none is pending{global}"),
        Unit::Seconds,
        oldest,
    );
    r.register(
        "queue_agents",
        format!("Agents polling the queue: neither stopped, told to stop polling, nor lost{global}"),
        polling,
    );
    r.register("runs_running", format!("Items in state running, over every queue{global}"), running);
    r.register(
        "agents",
        format!("Registered agents by status; lost: no heartbeat for {} s{global}", AGENT_LOST_AFTER.as_secs()),
        by_status,
    );
    Ok(r)
}

/// Rewrites prometheus-client's OpenMetrics text as the Prometheus text
/// format 0.0.4: a counter's family is named with its `_total` there, and
/// `# UNIT` and `# EOF` do not exist. The samples read the same in both
/// (no exemplars, no `_created` series are emitted here).
fn to_text_0_0_4(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len() + 64);
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let descriptor = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or(line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        match descriptor {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{kind}{name}_total {tail}\n"));
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_take_their_total_in_the_0_0_4_format() {
        let m = Metrics::new();
        m.enqueued();
        let mut om = String::new();
        prometheus_client::encoding::text::encode(&mut om, &m.registry).unwrap();
        assert!(om.contains("# TYPE liftoff_items_enqueued counter\nliftoff_items_enqueued_total 1\n"), "{om}");
        let text = to_text_0_0_4(&om);
        assert!(
            text.contains("# HELP liftoff_items_enqueued_total Run-queue items enqueued (this server process).\n# TYPE liftoff_items_enqueued_total counter\nliftoff_items_enqueued_total 1\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
        assert!(text.contains("# TYPE liftoff_build_duration_seconds histogram\n"), "{text}");
        assert!(text.contains("liftoff_queue_item_failures_total{stage=\"build\"} 0\n"), "{text}");
    }

    /// An item through every path that records it: claimed, started, ended
    /// (and failed), with ids nobody would use as a label value.
    fn item(state: &str, fence: i64) -> ItemView {
        serde_json::from_value(serde_json::json!({
            "id": "item-9f3c2a", "run_id": "run-7b1d", "entity": "default", "queue": "q",
            "state": state, "priority": "medium", "attempts": 0, "fence": fence,
            "spec": {
                "job": "default/p/j:v1", "project": "p",
                "source": {"type": "image", "image": "busybox:1", "args": []},
                "entrypoint": [], "args": [], "run_config": {},
                "resource": "local-container", "resource_config": {}
            },
            "created_at_ms": 1_000, "started_at_ms": 4_000, "ended_at_ms": 9_000, "stage": "run"
        }))
        .unwrap()
    }

    #[test]
    fn no_label_carries_an_item_or_run_id() {
        let m = Metrics::new();
        m.claimed(&item("claimed", 2), 3_000);
        m.transitioned(&item("running", 2));
        m.transitioned(&item("failed", 3));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry).unwrap();
        // the three histograms did observe the item
        for series in [
            "liftoff_queue_wait_seconds_count{entity=\"default\",queue=\"q\"} 1",
            "liftoff_claim_to_running_seconds_sum{runner=\"local-container\"} 1.0",
            "liftoff_run_duration_seconds_sum{entity=\"default\",queue=\"q\",runner=\"local-container\",result=\"failed\"} 5.0",
            "liftoff_queue_item_failures_total{stage=\"run\"} 1",
        ] {
            assert!(text.contains(series), "{series} missing from\n{text}");
        }
        for id in ["item-9f3c2a", "run-7b1d", "default/p/j", "busybox"] {
            assert!(!text.contains(id), "{id} is in a label:\n{text}");
        }
        assert!(m.claimed_at.lock().unwrap().is_empty(), "an ended item is forgotten");
    }
}
