//! Redelivery memory: duplicate events, concurrent deliveries and out-of-order events.
//!
//! NSPS redelivers every event that did not get a 2xx, and may deliver an old attempt after a
//! newer event for the same SIM was applied. This module remembers, per instance and in bounded
//! memory:
//! - which `event_id`s were processed successfully in the last `EVENT_DEDUP_TTL` (a repeat is
//!   answered without calling WTL); a delivery of an event that is being processed right now
//!   waits for that outcome instead of making the same calls again;
//! - per IMSI, the timestamp (`updated_at`, else `created_at`) of the last event applied; an
//!   older event is stale and skipped. Events for one IMSI are executed one at a time, so two
//!   deliveries cannot overtake each other on their way to WTL.
//!
//! Both tables hold at most `EVENT_DEDUP_MAX` entries and drop the oldest first.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{OwnedMutexGuard, watch};
use tokio::time::Instant;

use crate::nsps::Event;
use crate::plan::{Imsi, WtlCall};

/// A map that keeps at most `cap` entries, dropping the least recently written first.
struct Bounded<K, V> {
    map: HashMap<K, (V, u64)>,
    order: VecDeque<(K, u64)>,
    cap: usize,
    seq: u64,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap,
            seq: 0,
        }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k).map(|(v, _)| v)
    }

    fn insert(&mut self, k: K, v: V) {
        self.seq += 1;
        self.map.insert(k.clone(), (v, self.seq));
        self.order.push_back((k, self.seq));
        while self.map.len() > self.cap {
            self.pop_oldest();
        }
        // Rewrites of one key leave stale queue entries behind; compact before they pile up.
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order.retain(|(k, s)| map.get(k).is_some_and(|(_, cur)| cur == s));
        }
    }

    fn pop_oldest(&mut self) -> Option<(K, V)> {
        while let Some((k, s)) = self.order.pop_front() {
            if self.map.get(&k).is_some_and(|(_, cur)| *cur == s) {
                return self.map.remove(&k).map(|(v, _)| (k, v));
            }
        }
        None
    }

    /// Drops entries from the oldest end while `expired` says so.
    fn drop_oldest_while(&mut self, mut expired: impl FnMut(&V) -> bool) {
        while let Some((k, s)) = self.order.front() {
            match self.map.get(k) {
                Some((v, cur)) if cur == s => {
                    if !expired(v) {
                        break;
                    }
                    self.pop_oldest();
                }
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// How a delivery being processed ended, for those waiting on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    Running,
    Succeeded,
    Failed,
}

struct Tables {
    /// `event_id` → when it was processed successfully.
    done: Bounded<String, Instant>,
    /// `event_id` → the outcome channel of the delivery processing it now.
    running: HashMap<String, watch::Receiver<RunState>>,
    /// IMSI → timestamp of the last event applied to it.
    applied: Bounded<Imsi, OffsetDateTime>,
    /// IMSI → lock held while an event for it is executed.
    busy: HashMap<Imsi, Arc<tokio::sync::Mutex<()>>>,
}

pub struct Memory {
    ttl: Duration,
    ordering: bool,
    tables: Mutex<Tables>,
}

/// What to do with a delivery.
pub enum Admission {
    /// Processed successfully within `EVENT_DEDUP_TTL`.
    Duplicate,
    /// A newer event for this IMSI was already applied.
    Stale { imsi: Imsi, applied: String },
    /// Go ahead; report the outcome on the ticket.
    Proceed(Ticket),
}

impl Memory {
    /// `ttl` zero disables duplicate detection; `ordering` false disables the stale check.
    pub fn new(ttl: Duration, cap: usize, ordering: bool) -> Arc<Self> {
        Arc::new(Self {
            ttl,
            ordering,
            tables: Mutex::new(Tables {
                done: Bounded::new(cap),
                running: HashMap::new(),
                applied: Bounded::new(cap),
                busy: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // The tables stay consistent at every await-free step, so a poisoned lock is still usable.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembered event ids and IMSIs (for tests and metrics).
    pub fn sizes(&self) -> (usize, usize) {
        let t = self.lock();
        (t.done.len(), t.applied.len())
    }

    /// Decides whether this delivery runs. May wait: for a concurrent delivery of the same
    /// event, and for events executing on the same IMSIs.
    pub async fn admit(self: &Arc<Self>, event: &Event, calls: &[WtlCall]) -> Admission {
        let dedup = !self.ttl.is_zero();
        let mut outcome_tx = None;
        if dedup {
            loop {
                let mut waiting = {
                    let mut t = self.lock();
                    let now = Instant::now();
                    let ttl = self.ttl;
                    t.done.drop_oldest_while(|at| now.duration_since(*at) >= ttl);
                    if t.done.get(&event.event_id).is_some() {
                        return Admission::Duplicate;
                    }
                    match t.running.get(&event.event_id) {
                        Some(rx) => rx.clone(),
                        None => {
                            let (tx, rx) = watch::channel(RunState::Running);
                            t.running.insert(event.event_id.clone(), rx);
                            outcome_tx = Some(tx);
                            break;
                        }
                    }
                };
                // Another delivery of this event is running: wait for how it ends.
                let ended = waiting.wait_for(|s| *s != RunState::Running).await.map(|s| *s);
                if matches!(ended, Ok(RunState::Succeeded)) {
                    return Admission::Duplicate;
                }
                // It failed (or was cancelled): this delivery tries itself.
            }
        }

        let mut imsis: Vec<Imsi> = calls.iter().map(|c| c.imsi.clone()).collect();
        imsis.sort();
        imsis.dedup();
        let stamp = if self.ordering { event_time(event) } else { None };

        // One event at a time per IMSI; locks taken in sorted order, so never a deadlock.
        let mut guards = Vec::with_capacity(imsis.len());
        if self.ordering {
            for imsi in &imsis {
                let lock = self.lock().busy.entry(imsi.clone()).or_default().clone();
                guards.push(lock.lock_owned().await);
            }
        }
        let ticket = Ticket {
            memory: self.clone(),
            event_id: event.event_id.clone(),
            outcome_tx,
            imsis,
            stamp,
            guards,
            finished: false,
        };
        if let Some(stamp) = stamp {
            let t = self.lock();
            for imsi in &ticket.imsis {
                if let Some(last) = t.applied.get(imsi) {
                    if stamp < *last {
                        let applied = last.format(&Rfc3339).unwrap_or_default();
                        let imsi = imsi.clone();
                        drop(t);
                        // Not a failure of the event: it is answered 202 and will not be redelivered.
                        let mut ticket = ticket;
                        ticket.finish(RunState::Failed);
                        return Admission::Stale { imsi, applied };
                    }
                }
            }
        }
        Admission::Proceed(ticket)
    }
}

/// The right to execute one delivery. Dropping it without an outcome counts as a failure
/// (the request was cut off), so waiting deliveries go ahead themselves.
pub struct Ticket {
    memory: Arc<Memory>,
    event_id: String,
    outcome_tx: Option<watch::Sender<RunState>>,
    imsis: Vec<Imsi>,
    stamp: Option<OffsetDateTime>,
    guards: Vec<OwnedMutexGuard<()>>,
    finished: bool,
}

impl Ticket {
    pub fn succeeded(mut self) {
        self.finish(RunState::Succeeded);
    }

    pub fn failed(mut self) {
        self.finish(RunState::Failed);
    }

    fn finish(&mut self, state: RunState) {
        if self.finished {
            return;
        }
        self.finished = true;
        let mut t = self.memory.lock();
        if self.outcome_tx.is_some() {
            t.running.remove(&self.event_id);
            if state == RunState::Succeeded {
                t.done.insert(self.event_id.clone(), Instant::now());
            }
        }
        if state == RunState::Succeeded {
            if let Some(stamp) = self.stamp {
                for imsi in &self.imsis {
                    let newer = t.applied.get(imsi).is_none_or(|last| stamp > *last);
                    if newer {
                        t.applied.insert(imsi.clone(), stamp);
                    }
                }
            }
        }
        self.guards.clear();
        // Forget per-IMSI locks nobody else holds or waits for.
        for imsi in &self.imsis {
            if t.busy.get(imsi).is_some_and(|l| Arc::strong_count(l) == 1) {
                t.busy.remove(imsi);
            }
        }
        drop(t);
        if let Some(tx) = self.outcome_tx.take() {
            let _ = tx.send(state);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.finish(RunState::Failed);
    }
}

/// The event's own time: `updated_at`, else `created_at`. Unreadable → none (the event applies).
pub fn event_time(event: &Event) -> Option<OffsetDateTime> {
    event
        .updated_at
        .as_deref()
        .and_then(parse_time)
        .or_else(|| event.created_at.as_deref().and_then(parse_time))
}

/// RFC 3339, or an ISO-8601 date-time without offset (read as UTC).
fn parse_time(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t);
    }
    let format = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day][first [T] [ ]][hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    time::PrimitiveDateTime::parse(text, &format)
        .ok()
        .map(|t| t.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nsps::parse_event;
    use crate::plan::Action;

    fn event(id: &str, updated_at: Option<&str>) -> Event {
        let mut v = serde_json::json!({"event_id": id, "data": {"event_type": "SIM/Updated"}});
        if let Some(t) = updated_at {
            v["updated_at"] = serde_json::json!(t);
        }
        parse_event(v.to_string().as_bytes()).expect("valid")
    }

    fn call(imsi: &str) -> Vec<WtlCall> {
        vec![WtlCall {
            action: Action::Update,
            imsi: Imsi::parse(imsi).expect("valid"),
            state: None,
        }]
    }

    const A: &str = "001010000000001";

    async fn run(m: &Arc<Memory>, e: &Event, ok: bool) -> &'static str {
        match m.admit(e, &call(A)).await {
            Admission::Duplicate => "duplicate",
            Admission::Stale { .. } => "stale",
            Admission::Proceed(t) => {
                if ok {
                    t.succeeded()
                } else {
                    t.failed()
                }
                "ran"
            }
        }
    }

    #[tokio::test]
    async fn a_repeat_after_success_is_a_duplicate_but_not_after_failure() {
        let m = Memory::new(Duration::from_secs(600), 100, true);
        let e = event("e1", None);
        assert_eq!(run(&m, &e, false).await, "ran");
        assert_eq!(run(&m, &e, true).await, "ran", "a failed event is tried again");
        assert_eq!(run(&m, &e, true).await, "duplicate");
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates_are_forgotten_after_the_ttl() {
        let m = Memory::new(Duration::from_secs(10), 100, true);
        let e = event("e1", None);
        assert_eq!(run(&m, &e, true).await, "ran");
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(run(&m, &e, true).await, "duplicate");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(run(&m, &e, true).await, "ran");
    }

    #[tokio::test]
    async fn ttl_zero_disables_dedup() {
        let m = Memory::new(Duration::ZERO, 100, true);
        let e = event("e1", None);
        assert_eq!(run(&m, &e, true).await, "ran");
        assert_eq!(run(&m, &e, true).await, "ran");
    }

    #[tokio::test]
    async fn memory_is_capped_oldest_first() {
        let m = Memory::new(Duration::from_secs(600), 3, false);
        for i in 0..5 {
            assert_eq!(run(&m, &event(&format!("e{i}"), None), true).await, "ran");
        }
        assert_eq!(m.sizes().0, 3);
        assert_eq!(run(&m, &event("e4", None), true).await, "duplicate");
        assert_eq!(run(&m, &event("e0", None), true).await, "ran", "the oldest was dropped");
    }

    #[tokio::test]
    async fn an_older_event_for_the_same_imsi_is_stale() {
        let m = Memory::new(Duration::from_secs(600), 100, true);
        assert_eq!(
            run(&m, &event("new", Some("2025-03-12T17:00:00+00:00")), true).await,
            "ran"
        );
        assert_eq!(
            run(&m, &event("old", Some("2025-03-12T16:00:00Z")), true).await,
            "stale"
        );
        assert_eq!(
            run(&m, &event("same-time", Some("2025-03-12T17:00:00Z")), true).await,
            "ran"
        );
        assert_eq!(
            run(&m, &event("no-time", None), true).await,
            "ran",
            "events without timestamps apply"
        );
    }

    #[tokio::test]
    async fn a_failed_event_does_not_move_the_imsi_clock() {
        let m = Memory::new(Duration::from_secs(600), 100, true);
        assert_eq!(run(&m, &event("new", Some("2025-03-12T17:00:00Z")), false).await, "ran");
        assert_eq!(run(&m, &event("old", Some("2025-03-12T16:00:00Z")), true).await, "ran");
    }

    #[tokio::test]
    async fn concurrent_deliveries_wait_for_the_first() {
        let m = Memory::new(Duration::from_secs(600), 100, true);
        let e = event("e1", None);
        let Admission::Proceed(first) = m.admit(&e, &call(A)).await else {
            panic!("first delivery must run")
        };
        let m2 = m.clone();
        let second = tokio::spawn(async move {
            let e = event("e1", None);
            matches!(m2.admit(&e, &call(A)).await, Admission::Duplicate)
        });
        tokio::task::yield_now().await;
        first.succeeded();
        assert!(
            second.await.expect("task"),
            "the second delivery is answered as a duplicate"
        );
    }

    #[test]
    fn timestamps_with_and_without_offset_parse() {
        assert!(parse_time("2025-03-12T16:47:30.443939+00:00").is_some());
        assert!(parse_time("2025-05-16T12:59:46").is_some());
        assert!(parse_time("2025-05-16 12:59:46.5").is_some());
        assert!(parse_time("yesterday").is_none());
        assert!(parse_time("2025-03-12T16:47:30+02:00") < parse_time("2025-03-12T15:47:30Z"));
    }
}
