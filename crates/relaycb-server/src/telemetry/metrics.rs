//! Prometheus metrics, one registry per server instance (so that tests can
//! run several servers in one process), rendered in the OpenMetrics text
//! format that Prometheus scrapes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use relaycb_core::lifecycle::Phase;
use relaycb_core::{Event, TaskState};

/// The content type of [`Metrics::render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallbackLabels {
    event: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

/// Every metric the server exports.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    callbacks: Family<CallbackLabels, Counter>,
    duplicates: Counter,
    rejections: Family<ReasonLabels, Counter>,
    rejected_dropped: Counter,
    connections_refused: Counter,
    connections_open: Gauge,
    deviations: Family<KindLabels, Counter>,
    ack_latency: Histogram,
    batch_size: Histogram,
    tasks: Family<PhaseLabels, Gauge>,
    unattributed: Gauge,
    nats_published: Counter,
    nats_pending: Gauge,
    nats_publish_failures: Counter,
}

/// How a callback ended, for the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallbackOutcome {
    /// Stored for the first time.
    Stored,
    /// A retry of a stored event.
    Duplicate,
    /// Refused (and kept in the rejected store).
    Rejected,
    /// Could not be stored; the sender was told to retry.
    Failed,
}

impl CallbackOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CallbackOutcome::Stored => "stored",
            CallbackOutcome::Duplicate => "duplicate",
            CallbackOutcome::Rejected => "rejected",
            CallbackOutcome::Failed => "failed",
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("relaycb");
        let callbacks = Family::<CallbackLabels, Counter>::default();
        registry.register(
            "callbacks",
            "Callbacks received, by event name and outcome",
            callbacks.clone(),
        );
        let duplicates = Counter::default();
        registry.register(
            "duplicates",
            "Retries of an event already stored (stored once, deliveries counted)",
            duplicates.clone(),
        );
        let rejections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "rejections",
            "Callbacks refused, by reason",
            rejections.clone(),
        );
        let rejected_dropped = Counter::default();
        registry.register(
            "rejected_dropped",
            "Refused callbacks dropped from the bounded rejected store, oldest first",
            rejected_dropped.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed on arrival because --max-connections were open",
            connections_refused.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Connections open now, of at most --max-connections",
            connections_open.clone(),
        );
        let deviations = Family::<KindLabels, Counter>::default();
        registry.register(
            "deviations",
            "Deviations from the documented wire form in accepted callbacks, by kind",
            deviations.clone(),
        );
        let ack_latency = Histogram::new(exponential_buckets(0.000_25, 2.0, 16));
        registry.register_with_unit(
            "ack_latency",
            "Time from the start of a callback request to its answer",
            Unit::Seconds,
            ack_latency.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "batch_size",
            "Writes committed together by the store writer: callbacks and refusals, and also readiness probes and removals from the NATS outbox",
            batch_size.clone(),
        );
        let tasks = Family::<PhaseLabels, Gauge>::default();
        registry.register("tasks", "Tasks by phase", tasks.clone());
        let unattributed = Gauge::default();
        registry.register(
            "unattributed_events",
            "Stored events that could not be attributed to a task",
            unattributed.clone(),
        );
        let nats_published = Counter::default();
        registry.register(
            "nats_published",
            "Events published to JetStream and acknowledged",
            nats_published.clone(),
        );
        let nats_pending = Gauge::default();
        registry.register(
            "nats_pending",
            "Events in the outbox, stored but not yet acknowledged by JetStream",
            nats_pending.clone(),
        );
        let nats_publish_failures = Counter::default();
        registry.register(
            "nats_publish_failures",
            "Attempts to publish to JetStream that failed and will be retried",
            nats_publish_failures.clone(),
        );
        Metrics {
            registry,
            callbacks,
            duplicates,
            rejections,
            rejected_dropped,
            connections_refused,
            connections_open,
            deviations,
            ack_latency,
            batch_size,
            tasks,
            unattributed,
            nats_published,
            nats_pending,
            nats_publish_failures,
        }
    }
}

impl Metrics {
    /// Counts one callback. Undocumented event names share one label value
    /// so that a sender cannot grow the series without bound.
    pub(crate) fn callback(&self, event: Option<&Event>, outcome: CallbackOutcome) {
        let event = match event {
            None => "none",
            Some(Event::Unknown { .. }) => "unknown",
            Some(e) => e.name(),
        };
        self.callbacks
            .get_or_create(&CallbackLabels {
                event: event.to_owned(),
                outcome: outcome.as_str(),
            })
            .inc();
        if outcome == CallbackOutcome::Duplicate {
            self.duplicates.inc();
        }
    }

    /// Counts one refusal; `reason` is a short fixed name.
    pub(crate) fn rejection(&self, reason: &str) {
        self.rejections
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts refused callbacks dropped from the store.
    pub(crate) fn rejected_dropped(&self, n: u64) {
        self.rejected_dropped.inc_by(n);
    }

    /// Counts one connection closed because too many were open.
    pub(crate) fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Follows one connection from its acceptance to its end.
    pub(crate) fn connection_opened(&self) {
        self.connections_open.inc();
    }

    /// The other half of [`Metrics::connection_opened`].
    pub(crate) fn connection_closed(&self) {
        self.connections_open.dec();
    }

    /// Counts one deviation of the given kind name.
    pub(crate) fn deviation(&self, kind: &'static str) {
        self.deviations.get_or_create(&KindLabels { kind }).inc();
    }

    /// Records how long a callback took to answer.
    pub(crate) fn ack_latency(&self, seconds: f64) {
        self.ack_latency.observe(seconds);
    }

    /// Records the size of one committed batch.
    pub(crate) fn batch(&self, size: usize) {
        self.batch_size.observe(size as f64);
    }

    /// Sets the outbox size, as read from the store (at start, and before
    /// each scrape of a store shared with other servers).
    pub(crate) fn outbox_pending(&self, n: u64) {
        self.nats_pending.set(n as i64);
    }

    /// Follows the outbox size through a committed batch (exact while this
    /// server is the store's only writer).
    pub(crate) fn outbox_changed(&self, queued: u64, removed: u64) {
        if queued != removed {
            self.nats_pending.inc_by(queued as i64 - removed as i64);
        }
    }

    /// Counts one event acknowledged by JetStream.
    pub(crate) fn nats_published(&self) {
        self.nats_published.inc();
    }

    /// Counts one failed attempt to publish (or to reach JetStream).
    pub(crate) fn nats_publish_failure(&self) {
        self.nats_publish_failures.inc();
    }

    /// Renders every metric, with the task gauges set from `tasks`.
    pub(crate) fn render(&self, tasks: &[TaskState], unattributed: u64) -> String {
        for phase in [Phase::Unknown, Phase::Running, Phase::Exited] {
            let n = tasks.iter().filter(|t| t.phase == phase).count();
            self.tasks
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str(),
                })
                .set(n as i64);
        }
        self.unattributed.set(unattributed as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
