//! Process metrics in the Prometheus text format (`GET /metrics`).
//!
//! Hand-rolled on atomics: a handful of counters and two histograms do not justify a metrics
//! framework. Label values are bounded: event types outside `WTL_EVENT_ACTIONS` are counted as
//! `other`, so a sender cannot grow the label set without limit.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

#[derive(Debug)]
pub struct Metrics {
    /// Shared label values: counting an event clones a pointer, not the text.
    known_event_types: BTreeSet<Arc<str>>,
    other: Arc<str>,
    events: Mutex<BTreeMap<(Arc<str>, &'static str), u64>>,
    wtl_calls: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    wtl_retries: Mutex<BTreeMap<&'static str, u64>>,
    wtl_latency: Histogram,
    event_latency: Histogram,
    token_requests: AtomicU64,
    dedup_hits: AtomicU64,
    stale_hits: AtomicU64,
    shed: AtomicU64,
    in_flight: AtomicI64,
    store_latency: Histogram,
    store_errors: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            known_event_types: BTreeSet::new(),
            other: Arc::from("other"),
            events: Mutex::default(),
            wtl_calls: Mutex::default(),
            wtl_retries: Mutex::default(),
            wtl_latency: Histogram::default(),
            event_latency: Histogram::default(),
            token_requests: AtomicU64::default(),
            store_latency: Histogram::default(),
            store_errors: AtomicU64::default(),
            dedup_hits: AtomicU64::default(),
            stale_hits: AtomicU64::default(),
            shed: AtomicU64::default(),
            in_flight: AtomicI64::default(),
        }
    }
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    *m.entry(key).or_insert(0) += 1;
}

impl Metrics {
    pub(crate) fn new<'a>(event_types: impl IntoIterator<Item = &'a String>) -> Self {
        Self {
            known_event_types: event_types.into_iter().map(|t| Arc::from(t.as_str())).collect(),
            ..Self::default()
        }
    }

    /// One event answered: its type (bounded), outcome label, and time taken.
    pub(crate) fn event(&self, event_type: &str, outcome: &'static str, took: Duration) {
        let t = match self.known_event_types.get(event_type) {
            Some(known) => known.clone(),
            None => self.other.clone(),
        };
        bump(&self.events, (t, outcome));
        self.event_latency.observe(took);
    }

    pub(crate) fn wtl_call(&self, action: &'static str, result: &'static str, took: Duration) {
        bump(&self.wtl_calls, (action, result));
        self.wtl_latency.observe(took);
    }

    pub(crate) fn wtl_retry(&self, action: &'static str) {
        bump(&self.wtl_retries, action);
    }

    pub(crate) fn dedup_hit(&self) {
        self.dedup_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stale_hit(&self) {
        self.stale_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_token_requests(&self, n: u64) {
        self.token_requests.store(n, Ordering::Relaxed);
    }

    /// Counts a request in flight until the guard is dropped.
    pub(crate) fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// One operation on the shared redelivery store (Redis), and whether it failed.
    pub(crate) fn store_operation(&self, took: Duration, failed: bool) {
        self.store_latency.observe(took);
        if failed {
            self.store_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.render_labelled(&mut out);
        self.wtl_latency
            .render(&mut out, "wtl_call_duration_seconds", "Time of one WTL call attempt.");
        self.event_latency
            .render(&mut out, "nsps_event_duration_seconds", "Time to answer one event.");
        self.store_latency.render(
            &mut out,
            "redelivery_store_operation_duration_seconds",
            "Time of one operation on the shared redelivery store (Redis).",
        );
        self.render_counters(&mut out);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            render_runtime(&mut out, &runtime.metrics());
        }
        out
    }

    /// The counters with labels: events, WTL calls, retries.
    fn render_labelled(&self, out: &mut String) {
        out.push_str(
            "# HELP nsps_events_total Events answered, by event type and outcome.\n# TYPE nsps_events_total counter\n",
        );
        for ((t, o), n) in self.events.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                *out,
                "nsps_events_total{{event_type=\"{}\",outcome=\"{o}\"}} {n}",
                escape(t)
            );
        }
        out.push_str(
            "# HELP wtl_calls_total WTL call attempts, by action and result.\n# TYPE wtl_calls_total counter\n",
        );
        for ((a, r), n) in self.wtl_calls.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(*out, "wtl_calls_total{{action=\"{a}\",result=\"{r}\"}} {n}");
        }
        out.push_str("# HELP wtl_retries_total WTL call retries, by action.\n# TYPE wtl_retries_total counter\n");
        for (a, n) in self.wtl_retries.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(*out, "wtl_retries_total{{action=\"{a}\"}} {n}");
        }
    }

    /// The plain counters and the in-flight gauge.
    fn render_counters(&self, out: &mut String) {
        let counters = [
            (
                "wtl_token_requests_total",
                "Requests to the OAuth2 token endpoint.",
                self.token_requests.load(Ordering::Relaxed),
            ),
            (
                "nsps_dedup_hits_total",
                "Deliveries answered from the duplicate-event memory.",
                self.dedup_hits.load(Ordering::Relaxed),
            ),
            (
                "nsps_stale_events_total",
                "Events ignored because a newer one was applied for the IMSI.",
                self.stale_hits.load(Ordering::Relaxed),
            ),
            (
                "redelivery_store_errors_total",
                "Operations on the shared redelivery store (Redis) that failed or timed out.",
                self.store_errors.load(Ordering::Relaxed),
            ),
            (
                "nsps_shed_total",
                "Events refused with 503 because MAX_IN_FLIGHT was reached.",
                self.shed.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            series(out, name, help, "counter", value);
        }
        series(
            out,
            "http_requests_in_flight",
            "Requests being served.",
            "gauge",
            self.in_flight.load(Ordering::Relaxed),
        );
    }
}

pub(crate) struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One unlabelled series with its HELP and TYPE lines.
fn series(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    let _ = writeln!(*out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

/// The async runtime's own figures: how many worker threads it has, how long they have been busy
/// (wall time running tasks, so a worker preempted or throttled in the middle of one counts) and
/// how often they went to sleep for want of work (each park is a thread switched out and, when
/// work comes, a wake-up), and the tasks alive and waiting in the shared queue. Busy time over
/// wall time and workers near 1: the instance's CPU, or its CPU limit, is what bounds it.
fn render_runtime(out: &mut String, runtime: &tokio::runtime::RuntimeMetrics) {
    let workers = runtime.num_workers();
    let busy: Duration = (0..workers).map(|w| runtime.worker_total_busy_duration(w)).sum();
    let parks: u64 = (0..workers).map(|w| runtime.worker_park_count(w)).sum();
    series(
        out,
        "tokio_workers",
        "Worker threads of the async runtime.",
        "gauge",
        workers,
    );
    series(
        out,
        "tokio_alive_tasks",
        "Tasks alive in the async runtime.",
        "gauge",
        runtime.num_alive_tasks(),
    );
    series(
        out,
        "tokio_global_queue_depth",
        "Tasks waiting in the async runtime's shared queue.",
        "gauge",
        runtime.global_queue_depth(),
    );
    series(
        out,
        "tokio_worker_busy_seconds_total",
        "Wall time the async runtime's workers spent running tasks, all workers added up.",
        "counter",
        busy.as_secs_f64(),
    );
    series(
        out,
        "tokio_worker_parks_total",
        "Times a worker of the async runtime went to sleep for want of work.",
        "counter",
        parks,
    );
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_event_types_share_one_label() {
        let known = ["SIM/Updated".to_string()];
        let m = Metrics::new(known.iter());
        m.event("SIM/Updated", "processed", Duration::from_millis(3));
        m.event("Random/Thing-1", "ignored", Duration::from_millis(1));
        m.event("Random/Thing-2", "ignored", Duration::from_millis(1));
        let text = m.render();
        assert!(text.contains("nsps_events_total{event_type=\"SIM/Updated\",outcome=\"processed\"} 1"));
        assert!(text.contains("nsps_events_total{event_type=\"other\",outcome=\"ignored\"} 2"));
        assert!(!text.contains("Random"));
        assert!(text.contains("nsps_event_duration_seconds_count 3"));
    }

    /// The value of an unlabelled series in `text`.
    fn value(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} is not in:\n{text}"))
    }

    #[test]
    fn the_runtime_figures_are_those_of_the_runtime_serving() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("a runtime for the test");
        let m = Metrics::default();
        runtime.block_on(async {
            let first = m.render();
            // A task kept alive while the figures are read.
            let (release, waiting) = tokio::sync::oneshot::channel::<()>();
            let alive = tokio::spawn(waiting);
            // 30 ms of work on a worker; the worker then runs out of tasks and parks.
            let busy = tokio::spawn(async {
                let started = std::time::Instant::now();
                while started.elapsed() < Duration::from_millis(30) {
                    std::hint::spin_loop();
                }
            });
            busy.await.expect("the busy task ends");
            // A worker publishes its figures when it parks: wait for that, 5 s at most.
            let figure = |text: &str, name| value(text, name) - value(&first, name);
            let mut later = m.render();
            for _ in 0..250 {
                if figure(&later, "tokio_worker_busy_seconds_total") >= 0.025
                    && figure(&later, "tokio_worker_parks_total") > 0.0
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                later = m.render();
            }
            assert_eq!(value(&later, "tokio_workers"), 2.0);
            assert!(
                value(&later, "tokio_alive_tasks") >= 1.0,
                "the waiting task is alive:\n{later}"
            );
            assert!(later.contains("# TYPE tokio_global_queue_depth gauge\ntokio_global_queue_depth "));
            let busy = figure(&later, "tokio_worker_busy_seconds_total");
            assert!(busy >= 0.025, "30 ms of spinning on a worker counted as {busy} s busy");
            assert!(
                figure(&later, "tokio_worker_parks_total") > 0.0,
                "no park counted:\n{later}"
            );
            assert!(later.contains("# TYPE tokio_worker_parks_total counter"));
            let _ = release.send(());
            alive.await.expect("the waiting task ends").expect("released");
        });
    }

    #[test]
    fn outside_a_runtime_there_are_no_runtime_figures() {
        assert!(!Metrics::default().render().contains("tokio_"));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.wtl_call("update", "success", Duration::from_millis(3));
        m.wtl_call("update", "success", Duration::from_millis(300));
        let text = m.render();
        assert!(text.contains("wtl_call_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("wtl_call_duration_seconds_bucket{le=\"0.5\"} 2"));
        assert!(text.contains("wtl_call_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("wtl_calls_total{action=\"update\",result=\"success\"} 2"));
    }
}
