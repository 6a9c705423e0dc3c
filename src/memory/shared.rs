//! The redelivery memory shared by every instance, in Redis (`REDIS_URL`).
//!
//! Keys, all under `REDIS_KEY_PREFIX` and all with a time to live, so the store never grows
//! without bound:
//! - `done:<event_id>`: the event was processed successfully (`EVENT_DEDUP_TTL`);
//! - `running:<event_id>`: a delivery is processing it now (a lease: the event's time budget);
//! - `applied:<imsi>`: the time (µs since 1970) of the last event applied to the IMSI
//!   (`STALE_EVENT_TTL`); it only moves forward;
//! - `lock:<imsi>`: one event at a time per IMSI (a lease, as `running`).
//!
//! A lease holds a random token (the fencing value): it is released, and an outcome recorded,
//! only by a script that checks the token, so a holder whose lease ran out can never release
//! what another delivery took since. Every read-then-write runs as one Lua script, so two
//! instances never interleave inside one (`shared/scripts.rs`). An event costs two round
//! trips when nothing is contended: [`ADMIT`] (done?, the event's lease, the IMSIs' locks in
//! order, their last times) and [`COMMIT`].
//!
//! Cancellation: the [`Ticket`] exists before the first await of [`SharedMemory::admit`] and
//! notes a lease before asking for it; dropped without an outcome, it releases (token-checked)
//! whatever it may hold, in a task of its own. Leases expire in any case.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::{Admission, Newer, event_time, imsis_of, micros};
use crate::metrics::Metrics;
use crate::nsps::Event;
use crate::plan::{Imsi, WtlCall};

mod connect;
mod scripts;

pub(crate) use connect::{DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT, RedisSettings, StoreSetupError};
use scripts::{ADMIT, Attempt, COMMIT, RELEASE, read_attempt};

/// Why the shared store could not answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("redelivery store unavailable: Redis did not answer within REDIS_TIMEOUT ({0:?})")]
    Timeout(Duration),
    #[error("redelivery store unavailable: {0}")]
    Redis(String),
}

pub(crate) struct SharedMemory {
    /// Replaced when `REDIS_URL_FILE` changes; each operation takes the current one.
    redis: arc_swap::ArcSwap<ConnectionManager>,
    /// How the connection was last made, for a rotation of `REDIS_URL_FILE`.
    connection: std::sync::Mutex<RedisSettings>,
    prefix: String,
    timeout: Duration,
    dedup_ttl: Duration,
    stale_ttl: Duration,
    ordering: bool,
    /// How long a lease (`running`, `lock`) lasts: the event's whole time budget.
    lease: Duration,
    metrics: Arc<Metrics>,
    admit: redis::Script,
    commit: redis::Script,
    release: redis::Script,
}

/// First and longest pause between two looks at a busy event or IMSI.
const POLL_FIRST: Duration = Duration::from_millis(10);
const POLL_LONGEST: Duration = Duration::from_millis(200);

impl SharedMemory {
    /// Prepares the connection (made at first use and remade after every failure, so the
    /// connector starts and recovers while Redis is down).
    pub(crate) fn new(
        settings: &RedisSettings,
        memory: &super::Settings,
        lease: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, StoreSetupError> {
        let redis = connect::connection(settings)?;
        Ok(Arc::new(Self {
            redis: arc_swap::ArcSwap::from_pointee(redis),
            connection: std::sync::Mutex::new(settings.clone()),
            prefix: settings.key_prefix.clone(),
            timeout: settings.timeout,
            dedup_ttl: memory.dedup_ttl,
            stale_ttl: memory.stale_event_ttl,
            ordering: memory.stale_event_check,
            lease,
            metrics,
            admit: redis::Script::new(ADMIT),
            commit: redis::Script::new(COMMIT),
            release: redis::Script::new(RELEASE),
        }))
    }

    /// A new `REDIS_URL` (its file changed): operations from now on use a connection to it.
    /// On an error (not a usable URL) nothing changes.
    pub(crate) fn rotate_url(&self, url: secrecy::SecretString) -> Result<(), StoreSetupError> {
        let mut current = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = current.clone();
        next.shown = crate::telemetry::hide_userinfo(secrecy::ExposeSecret::expose_secret(&url));
        next.url = url;
        self.redis.store(Arc::new(connect::connection(&next)?));
        *current = next;
        Ok(())
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    /// Where the time of the last event applied to `imsi` is kept: a field of the hash of its
    /// hundred (`applied:<first 13 digits>xx`, the field its last two digits as a number), so a
    /// hundred IMSIs share one key and Redis keeps the hash in its compact encoding (at most 100
    /// fields, under the default `hash-max-listpack-entries` of 128).
    fn applied<'a>(&self, imsi: &'a Imsi) -> (String, &'a str) {
        let (head, tail) = imsi.as_str().split_at(imsi.as_str().len().saturating_sub(2));
        (format!("{}applied:{head}xx", self.prefix), field_of(tail))
    }

    /// The key of an IMSI's time in the layout before [`SharedMemory::applied`] (one key per
    /// IMSI): read until it expires, moved into the hash by the next success.
    fn legacy_applied(&self, imsi: &Imsi) -> String {
        self.key("applied", imsi.as_str())
    }

    /// Runs one Redis operation within `REDIS_TIMEOUT`, counting it in the metrics.
    async fn call<T: redis::FromRedisValue>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, op).await {
            Err(_) => Err(StoreError::Timeout(self.timeout)),
            // Redis errors describe the failure (refused, timed out, NOAUTH, ...), never the URL.
            Ok(Err(e)) => Err(StoreError::Redis(e.to_string())),
            Ok(Ok(v)) => Ok(v),
        };
        self.metrics.store_operation(started.elapsed(), result.is_err());
        result
    }

    /// `PING`, for readiness.
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = ConnectionManager::clone(&self.redis.load());
        self.call(redis::cmd("PING").query_async::<String>(&mut conn))
            .await
            .map(|_| ())
    }

    pub(crate) async fn admit(
        self: &Arc<Self>,
        event: &Event,
        calls: &[WtlCall],
    ) -> Result<Admission<Ticket>, StoreError> {
        let stamp = if self.ordering { event_time(event) } else { None };
        let mut ticket = Ticket {
            memory: self.clone(),
            token: uuid::Uuid::new_v4().simple().to_string(),
            event_id: event.event_id.clone(),
            imsis: imsis_of(calls),
            stamp,
            run_noted: false,
            locks_noted: 0,
            newer: Vec::new(),
            finished: false,
        };
        let dedup = !self.dedup_ttl.is_zero();
        if !dedup && !self.ordering {
            return Ok(Admission::Proceed(ticket));
        }
        let mut pause = POLL_FIRST;
        loop {
            match self.try_admit(&mut ticket, dedup).await? {
                Attempt::Admitted { newer } => {
                    ticket.newer = newer;
                    return Ok(Admission::Proceed(ticket));
                }
                Attempt::Duplicate => {
                    ticket.finished = true;
                    return Ok(Admission::Duplicate);
                }
                Attempt::Stale { imsi, applied } => {
                    ticket.finished = true;
                    return Ok(Admission::Stale { imsi, applied });
                }
                Attempt::Busy { .. } => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(POLL_LONGEST);
                }
            }
        }
    }

    /// One round trip: the [`ADMIT`] script for this delivery.
    async fn try_admit(&self, ticket: &mut Ticket, dedup: bool) -> Result<Attempt, StoreError> {
        let locked: &[Imsi] = if self.ordering { &ticket.imsis } else { &[] };
        let mut invocation = self.admit.key(self.key("done", &ticket.event_id));
        invocation.key(self.key("running", &ticket.event_id));
        for imsi in locked {
            invocation.key(self.key("lock", imsi.as_str()));
        }
        let hundreds: Vec<_> = locked.iter().map(|imsi| self.applied(imsi)).collect();
        for (hundred, _) in &hundreds {
            invocation.key(hundred);
        }
        for imsi in locked {
            invocation.key(self.legacy_applied(imsi));
        }
        invocation
            .arg(&ticket.token)
            .arg(millis(self.lease))
            .arg(if dedup { "1" } else { "0" })
            .arg(locked.len())
            .arg(ticket.stamp.map(|s| micros(s).to_string()).unwrap_or_default());
        for (_, field) in &hundreds {
            invocation.arg(*field);
        }
        // Noted before asking: if this future is dropped while the script is on its way, the
        // ticket still releases what it may have taken (a release that finds another token
        // does nothing).
        ticket.run_noted = dedup;
        ticket.locks_noted = locked.len();
        let mut conn = ConnectionManager::clone(&self.redis.load());
        let answer: Vec<String> = self.call(invocation.invoke_async(&mut conn)).await?;
        let attempt = read_attempt(&answer, locked)
            .ok_or_else(|| StoreError::Redis(format!("unexpected answer from the admission script: {answer:?}")))?;
        // What is held now: everything when admitted, the first keys taken when busy (the
        // event's lease first), nothing after any other answer.
        let held = match attempt {
            Attempt::Admitted { .. } => return Ok(attempt),
            Attempt::Busy { held } => held,
            Attempt::Duplicate | Attempt::Stale { .. } => 0,
        };
        ticket.run_noted = dedup && held > 0;
        ticket.locks_noted = held.saturating_sub(usize::from(dedup)).min(locked.len());
        Ok(attempt)
    }
}

/// The right to execute one delivery in the shared memory.
pub(crate) struct Ticket {
    memory: Arc<SharedMemory>,
    token: String,
    event_id: String,
    imsis: Vec<Imsi>,
    stamp: Option<OffsetDateTime>,
    /// The `running` lease may be held.
    run_noted: bool,
    /// The locks of the first this-many IMSIs may be held.
    locks_noted: usize,
    /// The IMSIs with a newer event applied, whose calls are skipped.
    newer: Vec<Newer>,
    finished: bool,
}

impl Ticket {
    pub(crate) fn newer(&self) -> &[Newer] {
        &self.newer
    }

    /// Records the success (the event done, the IMSIs' time) and releases the leases. A store
    /// that fails now does not undo the event: WTL has it, so it is answered 2xx all the same;
    /// a later redelivery may repeat its (idempotent) calls.
    /// Marked finished only once the outcome script has answered: cut off before that, the
    /// ticket's drop releases the leases (token-checked, so nothing if the script ran). False
    /// when the store could not record it.
    pub(crate) async fn succeeded(mut self) -> bool {
        let m = self.memory.clone();
        if m.dedup_ttl.is_zero() && !m.ordering {
            // Nothing to record and nothing held (see `admit`).
            self.finished = true;
            return true;
        }
        let mut invocation = m.commit.key(m.key("done", &self.event_id));
        invocation.key(m.key("running", &self.event_id));
        let hundreds: Vec<_> = self.imsis.iter().map(|imsi| m.applied(imsi)).collect();
        for (hundred, _) in &hundreds {
            invocation.key(hundred);
        }
        for imsi in &self.imsis {
            invocation.key(m.legacy_applied(imsi));
        }
        for imsi in &self.imsis {
            invocation.key(m.key("lock", imsi.as_str()));
        }
        invocation
            .arg(&self.token)
            .arg(if m.dedup_ttl.is_zero() { 0 } else { millis(m.dedup_ttl) })
            .arg(self.stamp.map(|s| micros(s).to_string()).unwrap_or_default())
            .arg(millis(m.stale_ttl))
            .arg(self.imsis.len());
        for (_, field) in &hundreds {
            invocation.arg(*field);
        }
        let mut conn = ConnectionManager::clone(&m.redis.load());
        let recorded = m.call::<i64>(invocation.invoke_async(&mut conn)).await;
        // A commit that failed (or timed out before it ran) leaves the ticket unfinished: its
        // drop releases the leases now rather than letting them hold the event and its IMSIs
        // for a whole lease (token-checked: nothing if the commit ran after all).
        self.finished = recorded.is_ok();
        if let Err(e) = &recorded {
            tracing::warn!(error = %e, "the event was applied but the redelivery store could not record it; a redelivery would repeat its calls");
        }
        recorded.is_ok()
    }

    pub(crate) async fn failed(mut self) {
        self.release_now().await;
    }

    /// The keys this ticket may hold a lease on.
    fn held_keys(&self) -> Vec<String> {
        let m = &self.memory;
        let mut keys = Vec::with_capacity(1 + self.locks_noted);
        if self.run_noted {
            keys.push(m.key("running", &self.event_id));
        }
        keys.extend(self.imsis[..self.locks_noted].iter().map(|i| m.key("lock", i.as_str())));
        keys
    }

    async fn release_now(&mut self) {
        release(self.memory.clone(), self.held_keys(), self.token.clone()).await;
        // Only now: cut off during the release, the drop releases again (token-checked).
        self.finished = true;
    }
}

async fn release(memory: Arc<SharedMemory>, keys: Vec<String>, token: String) {
    if keys.is_empty() {
        return;
    }
    let mut invocation = memory.release.prepare_invoke();
    for k in &keys {
        invocation.key(k);
    }
    invocation.arg(&token);
    let mut conn = ConnectionManager::clone(&memory.redis.load());
    if let Err(e) = memory.call::<i64>(invocation.invoke_async(&mut conn)).await {
        tracing::debug!(error = %e, "leases not released; they expire on their own");
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Cut off without an outcome: release in a task of its own (a drop cannot wait).
        let (memory, keys, token) = (self.memory.clone(), self.held_keys(), self.token.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(release(memory, keys, token));
        }
    }
}

/// An IMSI's last two digits as the number Redis stores in one byte of a compact hash (`07`
/// is kept as `7`).
fn field_of(tail: &str) -> &str {
    match tail.trim_start_matches('0') {
        "" => "0",
        number => number,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
