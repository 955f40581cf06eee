use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters, served in the Prometheus text format at `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub items_enqueued: AtomicU64,
    pub items_claimed: AtomicU64,
    pub claims_empty: AtomicU64,
    pub leases_expired: AtomicU64,
    pub stale_writes: AtomicU64,
    pub log_chunks: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, c) in [
            ("liftoff_items_enqueued_total", "Run-queue items enqueued.", &self.items_enqueued),
            ("liftoff_items_claimed_total", "Run-queue items claimed by agents.", &self.items_claimed),
            ("liftoff_claims_empty_total", "Claim requests that returned no item.", &self.claims_empty),
            ("liftoff_leases_expired_total", "Leases that expired without a heartbeat.", &self.leases_expired),
            ("liftoff_stale_writes_total", "Writes refused for a stale fencing token.", &self.stale_writes),
            ("liftoff_log_chunks_total", "Log chunks accepted.", &self.log_chunks),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", c.load(Ordering::Relaxed));
        }
        out
    }
}
