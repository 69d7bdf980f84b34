//! Per-source throttling of basic-auth verifications: one bcrypt check in flight per source address,
//! a bounded queue behind it, growing lock-outs after repeated failures, and a bounded table of
//! sources. It decides who may spend bcrypt time; it knows nothing of credentials or caching.
//!
//! A source is an IPv4 address, an IPv6 /64 (one host or LAN usually holds a whole /64, so
//! keying by full address would let one attacker pose as 2^64 sources), or "unknown" for requests
//! that carry no peer address (router-level tests): those all share one entry.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Sources remembered at once: 4,096 entries take well under 2 MB, so a spray of addresses
/// cannot grow memory; forgettable entries go first, then the least recently seen.
pub(super) const MAX_SOURCES: usize = 4096;
/// Requests of one source inside the auth check at once (waiting for its verification slot or
/// checking the cache); more are answered 429 at once. Cache hits leave within microseconds, so
/// only a cold cache (after a restart) queues; 64 covers a Prometheus fanning out `/probe` then.
pub(super) const MAX_PENDING_PER_SOURCE: usize = 64;
/// Failed verifications within [`FAILURE_WINDOW`] that start the first lock-out.
pub(super) const FAILURES_BEFORE_LOCKOUT: usize = 5;
pub(super) const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// The first lock-out; every failure after a lock-out locks again for twice as long, up to
/// [`MAX_LOCKOUT`], so a patient attacker gets about one guess a minute.
pub(super) const FIRST_LOCKOUT: Duration = Duration::from_secs(1);
pub(super) const MAX_LOCKOUT: Duration = Duration::from_secs(60);
/// A source whose last failure is this old starts again from a clean slate.
pub(super) const FORGET_AFTER: Duration = Duration::from_secs(600);
/// At most one warning per source this often; the refusals in between are counted in the next.
pub(super) const WARN_EVERY: Duration = Duration::from_secs(10);

/// Who a request comes from, as far as throttling is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Source {
    Unknown,
    V4(Ipv4Addr),
    /// The upper 64 bits of the address.
    V6Net(u64),
}

impl Source {
    /// IPv4-mapped IPv6 addresses (a dual-stack listener) count as the IPv4 address.
    pub(super) fn of(ip: Option<IpAddr>) -> Self {
        match ip.map(|ip| ip.to_canonical()) {
            None => Source::Unknown,
            Some(IpAddr::V4(v4)) => Source::V4(v4),
            Some(IpAddr::V6(v6)) => Source::V6Net((v6.to_bits() >> 64) as u64),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Unknown => f.write_str("unknown"),
            Source::V4(v4) => write!(f, "{v4}"),
            Source::V6Net(net) => {
                let addr = std::net::Ipv6Addr::from_bits(u128::from(*net) << 64);
                write!(f, "{addr}/64")
            }
        }
    }
}

/// Why a request was turned away before any bcrypt work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Too many recent failures; locked for this long yet.
    LockedOut(Duration),
    /// [`MAX_PENDING_PER_SOURCE`] requests of this source are already waiting.
    Busy,
}

impl Refusal {
    /// Whole seconds for `Retry-After`, rounded up, at least 1.
    pub(super) fn retry_after_secs(self) -> u64 {
        match self {
            Refusal::LockedOut(left) => {
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                secs.max(1)
            }
            Refusal::Busy => 1,
        }
    }
}

/// Failures and lock-outs of one source. Pure: time comes in as `now`.
#[derive(Debug, Default, Clone)]
struct Strikes {
    /// Failures within [`FAILURE_WINDOW`], before the first lock-out.
    recent: VecDeque<Instant>,
    /// After a first lock-out: how long the next failure locks for.
    next_lockout: Option<Duration>,
    locked_until: Option<Instant>,
    last_failure: Option<Instant>,
}

impl Strikes {
    /// How long the source stays locked, if it is.
    fn locked_for(&self, now: Instant) -> Option<Duration> {
        let left = self.locked_until?.saturating_duration_since(now);
        (!left.is_zero()).then_some(left)
    }

    /// Counts a failure; returns the lock-out it starts, if any.
    fn fail(&mut self, now: Instant) -> Option<Duration> {
        if self.forgettable(now) {
            *self = Strikes::default();
        }
        self.last_failure = Some(now);
        self.recent
            .retain(|&t| now.saturating_duration_since(t) < FAILURE_WINDOW);
        self.recent.push_back(now);
        let lockout = match self.next_lockout {
            Some(lockout) => lockout,
            None if self.recent.len() >= FAILURES_BEFORE_LOCKOUT => FIRST_LOCKOUT,
            None => return None,
        };
        self.recent.clear();
        // `checked_add` fails only near the end of the clock's range, never in practice.
        self.locked_until = Some(now.checked_add(lockout).unwrap_or(now));
        self.next_lockout = Some(lockout.saturating_mul(2).min(MAX_LOCKOUT));
        Some(lockout)
    }

    /// Nothing worth remembering: not locked, no failure within [`FORGET_AFTER`].
    fn forgettable(&self, now: Instant) -> bool {
        self.locked_for(now).is_none()
            && self
                .last_failure
                .is_none_or(|t| now.saturating_duration_since(t) >= FORGET_AFTER)
    }
}

/// One warning per [`WARN_EVERY`] and source; counts the throttling events (refusals, lock-outs)
/// it held back, so the next warning says how many there were.
#[derive(Debug, Default)]
struct WarnLimit {
    last: Option<Instant>,
    held_back: u64,
}

impl WarnLimit {
    /// `Some(events since the last warning, this one included)` when a warning is due.
    fn due(&mut self, now: Instant) -> Option<u64> {
        self.held_back = self.held_back.saturating_add(1);
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < WARN_EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

struct Entry {
    /// One permit: the source's single verification slot. tokio's semaphore is FIFO, so the
    /// source's requests take turns in arrival order.
    gate: Arc<Semaphore>,
    /// Held by every [`Ticket`]: its strong count, less the entry's own, is the source's
    /// pending requests. Clones are made only under the table lock, so a count read there
    /// can only be too high by requests finishing at that moment, never too low.
    pending: Arc<()>,
    strikes: Strikes,
    last_seen: Instant,
    warn: WarnLimit,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Entry {
            gate: Arc::new(Semaphore::new(1)),
            pending: Arc::new(()),
            strikes: Strikes::default(),
            last_seen: now,
            warn: WarnLimit::default(),
        }
    }

    fn pending(&self) -> usize {
        Arc::strong_count(&self.pending) - 1
    }

    fn forgettable(&self, now: Instant) -> bool {
        self.pending() == 0 && self.strikes.forgettable(now)
    }
}

/// Admission to the auth check for one request; counts as pending until dropped.
pub(super) struct Ticket {
    source: Source,
    gate: Arc<Semaphore>,
    _pending: Arc<()>,
}

/// The source's verification slot, held while bcrypt runs (and so moved into the blocking task:
/// a client that hangs up does not free it early).
pub(super) struct Turn {
    ticket: Ticket,
    _slot: OwnedSemaphorePermit,
}

impl Turn {
    pub(super) fn source(&self) -> Source {
        self.ticket.source
    }
}

/// The table of sources. Shared by every clone of the auth guard.
pub(super) struct Throttle {
    table: Mutex<HashMap<Source, Entry>>,
    capacity: usize,
}

impl Throttle {
    pub(super) fn new(capacity: usize) -> Self {
        Throttle {
            table: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Admits a request of `source` that has credentials to check, unless the source is locked
    /// out or already has [`MAX_PENDING_PER_SOURCE`] requests pending.
    pub(super) fn enter(&self, source: Source) -> Result<Ticket, Refusal> {
        let now = Instant::now();
        let (result, warning) = {
            let mut table = self.table();
            let entry = self.entry(&mut table, source, now);
            entry.last_seen = now;
            let refusal = match entry.strikes.locked_for(now) {
                Some(left) => Some(Refusal::LockedOut(left)),
                None if entry.pending() >= MAX_PENDING_PER_SOURCE => Some(Refusal::Busy),
                None => None,
            };
            match refusal {
                Some(refusal) => (Err(refusal), entry.warn.due(now)),
                None => (
                    Ok(Ticket {
                        source,
                        gate: entry.gate.clone(),
                        _pending: entry.pending.clone(),
                    }),
                    None,
                ),
            }
        };
        if let (Err(refusal), Some(refused)) = (&result, warning) {
            warn_refusals(source, *refusal, refused);
        }
        result
    }

    /// Waits, in arrival order, for the source's verification slot; refused if the source got
    /// locked out meanwhile (then the queue drains without bcrypt).
    pub(super) async fn turn(&self, ticket: Ticket) -> Result<Turn, Refusal> {
        // The gate is never closed, so `acquire_owned` cannot fail; were it closed, going on
        // without the slot would only lose the one-at-a-time limit, so refuse instead.
        let slot = ticket
            .gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Refusal::Busy)?;
        let now = Instant::now();
        let locked = {
            let mut table = self.table();
            table.get_mut(&ticket.source).and_then(|entry| {
                let left = entry.strikes.locked_for(now)?;
                Some((left, entry.warn.due(now)))
            })
        };
        if let Some((left, warning)) = locked {
            if let Some(refused) = warning {
                warn_refusals(ticket.source, Refusal::LockedOut(left), refused);
            }
            return Err(Refusal::LockedOut(left));
        }
        Ok(Turn {
            ticket,
            _slot: slot,
        })
    }

    /// Records a verification's outcome: a success clears the source's record, a failure may
    /// start a lock-out.
    pub(super) fn record(&self, source: Source, ok: bool) {
        let now = Instant::now();
        let lockout = {
            let mut table = self.table();
            let entry = self.entry(&mut table, source, now);
            if ok {
                entry.strikes = Strikes::default();
                None
            } else {
                entry
                    .strikes
                    .fail(now)
                    .map(|lockout| (lockout, entry.warn.due(now)))
            }
        };
        if let Some((lockout, Some(refused))) = lockout {
            tracing::warn!(
                source = %source,
                locked_for_seconds = lockout.as_secs_f64(),
                throttled_since_last_warning = refused,
                "basic auth: repeated failed logins from this address; answering it 429 \
                 without checking passwords for a while"
            );
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table().len()
    }

    #[cfg(test)]
    fn knows(&self, source: Source) -> bool {
        self.table().contains_key(&source)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Source, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry of `source`, made room for if the table is full: forgettable entries are
    /// dropped first, then the least recently seen sixteenth of the table (a batch, so that a
    /// spray of new addresses pays for one scan of the table per batch, not per request).
    /// Requests of a dropped entry finish normally (they hold its gate); the source simply
    /// starts a new record.
    fn entry<'t>(
        &self,
        table: &'t mut HashMap<Source, Entry>,
        source: Source,
        now: Instant,
    ) -> &'t mut Entry {
        if !table.contains_key(&source) && table.len() >= self.capacity {
            table.retain(|_, entry| !entry.forgettable(now));
            if table.len() >= self.capacity {
                let mut by_age: Vec<(Instant, Source)> = table
                    .iter()
                    .map(|(source, entry)| (entry.last_seen, *source))
                    .collect();
                let batch = (self.capacity / 16).clamp(1, by_age.len());
                by_age.select_nth_unstable_by_key(batch - 1, |(seen, _)| *seen);
                for (_, oldest) in &by_age[..batch] {
                    table.remove(oldest);
                }
            }
        }
        table.entry(source).or_insert_with(|| Entry::new(now))
    }
}

fn warn_refusals(source: Source, refusal: Refusal, refused: u64) {
    let why = match refusal {
        Refusal::LockedOut(_) => "locked out after repeated failed logins",
        Refusal::Busy => "too many authentication attempts pending",
    };
    tracing::warn!(
        source = %source,
        throttled_since_last_warning = refused,
        "basic auth: answering 429 to this address: {why}"
    );
}

#[cfg(test)]
mod tests;
