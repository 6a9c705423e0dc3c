//! The redelivery memory of one instance, in process.
//!
//! It remembers, in bounded memory:
//! - which `event_id`s were processed successfully in the last `EVENT_DEDUP_TTL` (a repeat is
//!   answered without calling WTL); a delivery of an event that is being processed right now
//!   waits for that outcome instead of making the same calls again;
//! - per IMSI, the timestamp (`updated_at`, else `created_at`) of the last event applied; an
//!   older event is stale and skipped. Events for one IMSI are executed one at a time, so two
//!   deliveries cannot overtake each other on their way to WTL.
//!
//! Both tables hold at most `EVENT_DEDUP_MAX` entries and drop the oldest first. Their entries
//! are small and fixed-size (no heap allocation of their own): an event id is kept as a 128-bit
//! keyed hash of it (two SipHash values with keys drawn at start-up), an IMSI as the number it
//! is, times as integers; about 60 to 90 bytes an entry with the tables' slack (measured by
//! `bench/`).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::bounded::Bounded;
use super::{Admission, Newer, event_time, micros, shown_time};
use tokio::sync::{OwnedMutexGuard, watch};
use tokio::time::Instant;

use crate::nsps::Event;
use crate::plan::{Imsi, WtlCall};

/// How a delivery being processed ended, for those waiting on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    Running,
    Succeeded,
    Failed,
}

/// An event id as the `done` table keeps it: a 128-bit keyed hash (a collision, which would
/// answer an event as a duplicate, is as likely as guessing a 128-bit key).
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
struct EventKey([u64; 2]);

/// The two keyed hashers behind [`EventKey`], with keys drawn at start-up.
struct EventHasher([std::hash::RandomState; 2]);

impl EventHasher {
    fn new() -> Self {
        Self([std::hash::RandomState::new(), std::hash::RandomState::new()])
    }

    fn key(&self, event_id: &str) -> EventKey {
        use std::hash::BuildHasher as _;
        EventKey([self.0[0].hash_one(event_id), self.0[1].hash_one(event_id)])
    }
}

/// An IMSI as the `applied` table keeps it: its 15 digits as a number.
fn imsi_key(imsi: &Imsi) -> u64 {
    imsi.as_str().parse().unwrap_or(u64::MAX)
}

struct Tables {
    /// `event_id` → when it was processed successfully (ms since the memory was made).
    done: Bounded<EventKey, u64>,
    /// `event_id` → the registration and outcome channel of the delivery processing it now.
    running: HashMap<String, (u64, watch::Receiver<RunState>)>,
    /// Last registration number given out.
    run_seq: u64,
    /// IMSI → time of the last event applied to it, in µs since 1970.
    applied: Bounded<u64, i64>,
    /// IMSI → lock held while an event for it is executed.
    busy: HashMap<Imsi, Arc<tokio::sync::Mutex<()>>>,
}

pub(crate) struct Memory {
    ttl: Duration,
    ordering: bool,
    /// What `done`'s times count from.
    started: Instant,
    event_keys: EventHasher,
    tables: Mutex<Tables>,
}

impl Memory {
    /// `ttl` zero disables duplicate detection; `ordering` false disables the stale check.
    pub(crate) fn new(ttl: Duration, cap: usize, ordering: bool) -> Arc<Self> {
        Arc::new(Self {
            ttl,
            ordering,
            started: Instant::now(),
            event_keys: EventHasher::new(),
            tables: Mutex::new(Tables {
                done: Bounded::new(cap),
                running: HashMap::new(),
                run_seq: 0,
                applied: Bounded::new(cap),
                busy: HashMap::new(),
            }),
        })
    }

    /// Milliseconds since the memory was made.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // The tables stay consistent at every await-free step, so a poisoned lock is still usable.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembered event ids and IMSIs (for tests and metrics).
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let t = self.lock();
        (t.done.len(), t.applied.len())
    }

    /// Decides whether this delivery runs. May wait: for a concurrent delivery of the same
    /// event, and for events executing on the same IMSIs.
    ///
    /// Cancellation: the returned future may be dropped at either await (the client hung up,
    /// `REQUEST_TIMEOUT` fired, shutdown). Everything it registers in the shared tables is held
    /// by the [`Ticket`] built before the first await, and the ticket's `Drop` removes it again
    /// and tells waiting deliveries that this one ended without success. So a delivery cut off
    /// while it waits leaves no "running" entry behind and no per-IMSI lock held.
    pub(crate) async fn admit(self: &Arc<Self>, event: &Event, calls: &[WtlCall]) -> Admission<Ticket> {
        let imsis = super::imsis_of(calls);
        let stamp = if self.ordering { event_time(event) } else { None };
        let mut ticket = Ticket {
            memory: self.clone(),
            event_id: event.event_id.clone(),
            run: None,
            imsis,
            stamp,
            guards: Vec::new(),
            newer: Vec::new(),
            finished: false,
        };

        if !self.ttl.is_zero() {
            loop {
                let mut waiting = match self.claim_or_watch(&event.event_id) {
                    Claim::Duplicate => return ticket.close(Admission::Duplicate),
                    Claim::Claimed(run) => {
                        ticket.run = Some(run);
                        break;
                    }
                    Claim::Watch(rx) => rx,
                };
                // Another delivery of this event is running: wait for how it ends. An `Err`
                // means its sender is gone; `claim_or_watch` then finds the entry abandoned.
                let ended = waiting.wait_for(|s| *s != RunState::Running).await.map(|s| *s);
                if matches!(ended, Ok(RunState::Succeeded)) {
                    return ticket.close(Admission::Duplicate);
                }
                // It failed (or was cut off): this delivery tries itself.
            }
        }

        // One event at a time per IMSI; locks taken in sorted order, so never a deadlock. A
        // delivery dropped while it waits here holds no lock yet: its ticket's `Drop` forgets
        // the lock entries nobody holds.
        if self.ordering {
            for i in 0..ticket.imsis.len() {
                let lock = self.lock().busy.entry(ticket.imsis[i].clone()).or_default().clone();
                ticket.guards.push(lock.lock_owned().await);
            }
        }
        if let Some(stamp) = stamp {
            ticket.newer = self.newer_applied(&ticket.imsis, stamp);
            if ticket.newer.len() == ticket.imsis.len()
                && let Some(Newer { imsi, applied }) = ticket.newer.first().cloned()
            {
                // Not a failure of the event: it is answered 202 and will not be redelivered.
                return ticket.close(Admission::Stale { imsi, applied });
            }
        }
        Admission::Proceed(ticket)
    }

    /// Marks `event_id` as running in this delivery, unless it was processed already or
    /// another live delivery runs it. An entry whose sender is gone (its delivery ended
    /// without clearing it) counts as no one running it and is replaced.
    fn claim_or_watch(&self, event_id: &str) -> Claim {
        let key = self.event_keys.key(event_id);
        let now = self.now_ms();
        let ttl = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut t = self.lock();
        t.done.drop_oldest_while(|at| now.saturating_sub(*at) >= ttl);
        if t.done.get(&key).is_some() {
            return Claim::Duplicate;
        }
        if let Some((_, rx)) = t.running.get(event_id)
            && rx.has_changed().is_ok()
        {
            return Claim::Watch(rx.clone());
        }
        t.run_seq += 1;
        let id = t.run_seq;
        let (tx, rx) = watch::channel(RunState::Running);
        t.running.insert(event_id.to_string(), (id, rx));
        Claim::Claimed(Run { id, tx })
    }

    /// Those of `imsis` that already have a newer event applied than `stamp`.
    fn newer_applied(&self, imsis: &[Imsi], stamp: OffsetDateTime) -> Vec<Newer> {
        let stamp = micros(stamp);
        let t = self.lock();
        imsis
            .iter()
            .filter_map(|imsi| {
                let last = *t.applied.get(&imsi_key(imsi))?;
                (stamp < last).then(|| Newer {
                    imsi: imsi.clone(),
                    applied: shown_time(last),
                })
            })
            .collect()
    }

    /// Event ids marked running and IMSI locks held or awaited (for tests: both are zero when
    /// no delivery is in flight).
    pub(crate) fn in_flight(&self) -> (usize, usize) {
        let t = self.lock();
        (t.running.len(), t.busy.len())
    }
}

/// What [`Memory::claim_or_watch`] found.
enum Claim {
    Duplicate,
    Claimed(Run),
    Watch(watch::Receiver<RunState>),
}

/// This delivery's registration as the one running its event.
struct Run {
    /// Which registration, so that only its own entry is ever removed.
    id: u64,
    tx: watch::Sender<RunState>,
}

/// The right to execute one delivery. Dropping it without an outcome counts as a failure
/// (the request was cut off), so waiting deliveries go ahead themselves.
pub(crate) struct Ticket {
    memory: Arc<Memory>,
    event_id: String,
    run: Option<Run>,
    imsis: Vec<Imsi>,
    stamp: Option<OffsetDateTime>,
    guards: Vec<OwnedMutexGuard<()>>,
    /// The IMSIs with a newer event applied, whose calls are skipped.
    newer: Vec<Newer>,
    finished: bool,
}

impl Ticket {
    pub(crate) fn newer(&self) -> &[Newer] {
        &self.newer
    }

    pub(crate) fn succeeded(mut self) {
        self.finish(RunState::Succeeded);
    }

    pub(crate) fn failed(mut self) {
        self.finish(RunState::Failed);
    }

    /// Ends an admission that does not proceed (duplicate, stale): releases what it holds.
    fn close(mut self, admission: Admission<Ticket>) -> Admission<Ticket> {
        self.finish(RunState::Failed);
        admission
    }

    fn finish(&mut self, state: RunState) {
        if self.finished {
            return;
        }
        self.finished = true;
        let mut t = self.memory.lock();
        if let Some(run) = &self.run {
            if t.running.get(&self.event_id).is_some_and(|(id, _)| *id == run.id) {
                t.running.remove(&self.event_id);
            }
            if state == RunState::Succeeded {
                let key = self.memory.event_keys.key(&self.event_id);
                t.done.insert(key, self.memory.now_ms());
            }
        }
        if state == RunState::Succeeded
            && let Some(stamp) = self.stamp
        {
            let stamp = micros(stamp);
            for imsi in &self.imsis {
                let key = imsi_key(imsi);
                if t.applied.get(&key).is_none_or(|last| stamp > *last) {
                    t.applied.insert(key, stamp);
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
        if let Some(run) = self.run.take() {
            let _ = run.tx.send(state);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.finish(RunState::Failed);
    }
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
            Admission::Unavailable { .. } => "unavailable",
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

    /// Runs `admit` on its own task and waits for its answer from outside, so a delivery that
    /// never yields fails the test instead of stalling it.
    async fn admitted_within(m: &Arc<Memory>, id: &str, imsi: &str) -> &'static str {
        let m = m.clone();
        let (id, imsi) = (id.to_string(), imsi.to_string());
        let task = tokio::spawn(async move {
            match m.admit(&event(&id, None), &call(&imsi)).await {
                Admission::Duplicate => "duplicate",
                Admission::Stale { .. } => "stale",
                Admission::Unavailable { .. } => "unavailable",
                Admission::Proceed(t) => {
                    t.succeeded();
                    "ran"
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the delivery was admitted without hanging")
            .expect("task")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_dropped_while_waiting_for_its_imsi_leaves_nothing_behind() {
        let m = Memory::new(Duration::from_secs(600), 100, true);
        let Admission::Proceed(holder) = m.admit(&event("first", None), &call(A)).await else {
            panic!("the first event runs")
        };
        // A second event for the same IMSI waits for the lock and is cut off there.
        let cut = tokio::time::timeout(Duration::from_millis(50), m.admit(&event("second", None), &call(A))).await;
        assert!(cut.is_err(), "the second event waits while the first holds the IMSI");
        holder.succeeded();
        assert_eq!(m.in_flight(), (0, 0), "nothing of the cut-off delivery remains");
        assert_eq!(
            admitted_within(&m, "second", A).await,
            "ran",
            "its redelivery runs normally"
        );
        assert_eq!(admitted_within(&m, "second", A).await, "duplicate");
        assert_eq!(m.in_flight(), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_dropped_while_waiting_for_its_twin_leaves_nothing_behind() {
        let m = Memory::new(Duration::from_secs(600), 100, true);
        let Admission::Proceed(first) = m.admit(&event("e1", None), &call(A)).await else {
            panic!("the first delivery runs")
        };
        let cut = tokio::time::timeout(Duration::from_millis(50), m.admit(&event("e1", None), &call(A))).await;
        assert!(cut.is_err(), "the second delivery waits for the first");
        first.failed();
        assert_eq!(m.in_flight(), (0, 0));
        assert_eq!(admitted_within(&m, "e1", A).await, "ran", "a redelivery runs itself");
        assert_eq!(m.in_flight(), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_running_delivery_dropped_before_its_outcome_releases_its_twins() {
        let m = Memory::new(Duration::from_secs(600), 100, true);
        let admitted = m.admit(&event("e1", None), &call(A)).await;
        let waiter = {
            let m = m.clone();
            tokio::spawn(async move { matches!(m.admit(&event("e1", None), &call(A)).await, Admission::Proceed(_)) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(admitted);
        let ran = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiting delivery goes ahead")
            .expect("task");
        assert!(ran, "the waiting delivery runs the event itself");
        assert_eq!(m.in_flight(), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_running_entry_counts_as_no_one_running() {
        let m = Memory::new(Duration::from_secs(600), 100, true);
        {
            // An entry whose sender is gone, as a delivery that ended without clearing it would
            // leave.
            let (tx, rx) = watch::channel(RunState::Running);
            drop(tx);
            m.lock().running.insert("e1".into(), (99, rx));
        }
        assert_eq!(admitted_within(&m, "e1", A).await, "ran");
        assert_eq!(m.in_flight(), (0, 0));
    }
}
