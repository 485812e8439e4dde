//! A tenant's spend ledger: what it spent today and this month (UTC), what is reserved by
//! requests in flight, and the admission rule that keeps spend + reservations under the
//! budget.
//!
//! Admission and settlement take a short per-tenant mutex: the check "spent + reserved +
//! this request <= limit" and the reservation must be one atomic step across two windows
//! (day and month), or concurrent requests would all pass the check together. The critical
//! section is a few additions, never held across an await.
//!
//! Every amount here is derived from what clients and providers sent, so the sums saturate
//! (a saturated hold is refused by any limit) and never wrap (a wrapped one would pass).
#![deny(clippy::arithmetic_side_effects)]

use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::Budget;
use crate::cost::{nanos, Nanos};

/// Days since 1970-01-01 (UTC) and the month as `year * 12 + month0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub day: u64,
    pub month: u64,
}

impl Period {
    // Calendar arithmetic on a day count from a clock (at most ~2e14): cannot overflow.
    #[allow(clippy::arithmetic_side_effects)]
    pub fn of_day(day: u64) -> Period {
        let (year, month) = civil_year_month(day as i64);
        Period {
            day,
            month: (year * 12 + (month - 1)) as u64,
        }
    }

    /// The UTC day and month that contain `unix_secs`.
    pub fn at(unix_secs: u64) -> Period {
        Period::of_day(unix_secs / 86_400)
    }
}

/// Where budgets read the UTC date. The gateway uses the wall clock; tests pass a fixed or
/// settable one, so that a hold dropped or settled later is counted in the window the test
/// chose and not in whatever month the machine happens to be in.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.unix_secs())
    }
}

impl Clock {
    /// Seconds since the epoch from the system clock (0 if it is set before 1970).
    pub fn system() -> Clock {
        Clock(Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        }))
    }

    /// A clock that reads whatever the returned handle was last set to.
    pub fn settable(unix_secs: u64) -> (Clock, Arc<std::sync::atomic::AtomicU64>) {
        let now = Arc::new(std::sync::atomic::AtomicU64::new(unix_secs));
        let read = now.clone();
        (
            Clock(Arc::new(move || {
                read.load(std::sync::atomic::Ordering::Relaxed)
            })),
            now,
        )
    }

    pub fn unix_secs(&self) -> u64 {
        (self.0)()
    }

    pub fn period(&self) -> Period {
        Period::at(self.unix_secs())
    }

    /// Seconds until the next UTC midnight: when a daily limit frees up.
    pub fn seconds_to_next_day(&self) -> u64 {
        86_400u64.saturating_sub(self.unix_secs() % 86_400)
    }
}

/// Year and month (1-12) of a day count since the epoch (Howard Hinnant's civil_from_days).
/// Calendar arithmetic on day counts a clock produces: far from any overflow.
#[allow(clippy::arithmetic_side_effects)]
fn civil_year_month(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

#[derive(Debug, Default, Clone, Copy)]
pub struct LedgerState {
    pub period_day: u64,
    pub period_month: u64,
    pub spent_day: Nanos,
    pub spent_month: Nanos,
    /// Held by this replica's requests in the local ledger (not those held in Redis).
    pub reserved: Nanos,
    pub requests_in_flight: u64,
    /// With Redis: what every replica holds, as Redis last said (spent_* mirror it too).
    pub shared_reserved: Nanos,
    /// Spend settled here while Redis was away, added to Redis by the next reservation.
    pub unsynced: Nanos,
    pub unsynced_day: u64,
    pub unsynced_month: u64,
}

impl LedgerState {
    fn add_spend(&mut self, actual: Nanos) {
        self.spent_day = self.spent_day.saturating_add(actual);
        self.spent_month = self.spent_month.saturating_add(actual);
    }
}

#[derive(Debug, Default)]
pub struct Ledger {
    state: Mutex<LedgerState>,
    clock: Clock,
}

/// Why a request may not spend `worst` now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// More than `per_request_usd` even in the worst case.
    PerRequestCap,
    Daily,
    Monthly,
}

impl Refusal {
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::PerRequestCap => "per-request cost cap",
            Refusal::Daily => "daily budget",
            Refusal::Monthly => "monthly budget",
        }
    }
}

impl Ledger {
    pub fn with_clock(clock: Clock) -> Ledger {
        Ledger {
            state: Mutex::default(),
            clock,
        }
    }

    /// The current UTC window by this ledger's clock.
    pub fn now(&self) -> Period {
        self.clock.period()
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn lock(&self, now: Period) -> MutexGuard<'_, LedgerState> {
        // A poisoned ledger is still a correct ledger: every update is a few additions.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.period_day != now.day {
            state.period_day = now.day;
            state.spent_day = 0;
        }
        if state.period_month != now.month {
            state.period_month = now.month;
            state.spent_month = 0;
        }
        state
    }

    pub fn snapshot(&self, now: Period) -> LedgerState {
        *self.lock(now)
    }

    /// True once spend + reservations pass the soft fraction of either limit.
    pub fn past_soft_limit(&self, budget: &Budget, now: Period) -> bool {
        let s = self.lock(now);
        let held = s.reserved.saturating_add(s.shared_reserved);
        let over = |limit: Option<f64>, spent: Nanos| {
            limit.is_some_and(|l| spent.saturating_add(held) as f64 >= budget.soft_limit * l * 1e9)
        };
        over(budget.daily_usd, s.spent_day) || over(budget.monthly_usd, s.spent_month)
    }

    /// Reserves `worst` if the budget allows it.
    pub fn reserve(
        self: &Arc<Self>,
        budget: &Budget,
        worst: Nanos,
        now: Period,
    ) -> Result<Reservation, Refusal> {
        if budget.per_request_usd.is_some_and(|cap| worst > nanos(cap)) {
            return Err(Refusal::PerRequestCap);
        }
        let mut s = self.lock(now);
        let fits = |limit: Option<f64>, spent: Nanos| {
            limit.is_none_or(|l| spent.saturating_add(s.reserved).saturating_add(worst) <= nanos(l))
        };
        if !fits(budget.daily_usd, s.spent_day) {
            return Err(Refusal::Daily);
        }
        if !fits(budget.monthly_usd, s.spent_month) {
            return Err(Refusal::Monthly);
        }
        s.reserved = s.reserved.saturating_add(worst);
        s.requests_in_flight = s.requests_in_flight.saturating_add(1);
        Ok(Reservation {
            ledger: self.clone(),
            amount: worst,
            settled: false,
            shared: None,
            carry: false,
        })
    }

    /// Spend that was never reserved (a tenant without a budget is still accounted).
    pub fn record(&self, actual: Nanos, now: Period) {
        let mut s = self.lock(now);
        s.add_spend(actual);
    }

    /// Takes the spend Redis has not seen yet: (day part, month part) for the current
    /// windows; spend of a window already over is dropped (its limit no longer applies).
    pub fn take_unsynced(&self, now: Period) -> (Nanos, Nanos) {
        let mut s = self.lock(now);
        let amount = std::mem::take(&mut s.unsynced);
        (
            if s.unsynced_day == now.day { amount } else { 0 },
            if s.unsynced_month == now.month {
                amount
            } else {
                0
            },
        )
    }

    /// Puts back spend taken by `take_unsynced` that did not reach Redis.
    pub fn restore_unsynced(&self, carried: (Nanos, Nanos), now: Period) {
        if carried == (0, 0) {
            return;
        }
        let mut s = self.lock(now);
        s.unsynced = s.unsynced.saturating_add(carried.0.max(carried.1));
        // Spend of a day already over carries into the month only.
        s.unsynced_day = if carried.0 > 0 { now.day } else { u64::MAX };
        s.unsynced_month = now.month;
    }

    /// Spend settled here because Redis did not answer: counted locally now, carried to
    /// Redis later.
    pub fn record_unsynced(&self, actual: Nanos, now: Period) {
        let mut s = self.lock(now);
        s.add_spend(actual);
        s.unsynced = s.unsynced.saturating_add(actual);
        s.unsynced_day = now.day;
        s.unsynced_month = now.month;
    }

    /// Takes Redis's view of the tenant's spend (every replica's) as the local one: it is
    /// what the soft limit and the metrics read, and where local enforcement starts from if
    /// Redis goes away. Local spend not yet in Redis stays on top.
    pub fn mirror(&self, view: crate::limits::redis_budget::SharedView, now: Period) {
        let mut s = self.lock(now);
        s.spent_day = view.day.saturating_add(s.unsynced);
        s.spent_month = view.month.saturating_add(s.unsynced);
        s.shared_reserved = view.reserved;
    }
}

/// Money held for one request in flight; settled with the real cost at the end.
/// Dropped unsettled (a bug or a panic), it releases the hold and charges nothing.
#[derive(Debug)]
pub struct Reservation {
    ledger: Arc<Ledger>,
    amount: Nanos,
    settled: bool,
    /// Held in Redis rather than in `ledger`: settled there.
    shared: Option<SharedHold>,
    /// Held locally because Redis did not answer: the spend is carried to Redis later.
    carry: bool,
}

/// A hold in the shared ledger: which tenant and which hold id to settle.
pub struct SharedHold {
    pub shared: Arc<crate::redis::Shared>,
    pub tenant: Arc<str>,
    pub id: String,
    /// Publishes the tenant's spend metrics after Redis answered.
    pub on_settled: Box<dyn Fn(&Ledger) + Send + Sync>,
}

impl std::fmt::Debug for SharedHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedHold")
            .field("tenant", &self.tenant)
            .field("id", &self.id)
            .finish()
    }
}

impl Reservation {
    /// A hold Redis granted.
    pub fn in_shared(ledger: Arc<Ledger>, amount: Nanos, hold: SharedHold) -> Reservation {
        Reservation {
            ledger,
            amount,
            settled: false,
            shared: Some(hold),
            carry: false,
        }
    }

    /// A local hold of a tenant whose budget lives in Redis (which did not answer): its
    /// spend is added to Redis by a later reservation.
    pub fn carried_to_shared(mut self) -> Reservation {
        self.carry = true;
        self
    }

    pub fn amount(&self) -> Nanos {
        self.amount
    }

    pub fn settle(mut self, actual: Nanos) {
        let now = self.ledger.now();
        self.release(actual, now);
    }

    pub fn settle_at(mut self, actual: Nanos, now: Period) {
        self.release(actual, now);
    }

    fn release(&mut self, actual: Nanos, now: Period) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        if let Some(hold) = self.shared.take() {
            // Settled in Redis after the response; if Redis does not answer, the spend is
            // kept here and carried over (the hold itself expires in Redis).
            let ledger = self.ledger.clone();
            let spawner = hold.shared.clone();
            spawner.spawn(async move {
                let settled = crate::limits::redis_budget::settle(
                    &hold.shared,
                    &hold.tenant,
                    Some(&hold.id),
                    actual,
                    now,
                )
                .await;
                match settled {
                    Some(view) => ledger.mirror(view, now),
                    None => ledger.record_unsynced(actual, now),
                }
                (hold.on_settled)(&ledger);
            });
            return;
        }
        let mut s = self.ledger.lock(now);
        s.reserved = s.reserved.saturating_sub(self.amount);
        s.requests_in_flight = s.requests_in_flight.saturating_sub(1);
        s.add_spend(actual);
        if self.carry && actual > 0 {
            s.unsynced = s.unsynced.saturating_add(actual);
            s.unsynced_day = now.day;
            s.unsynced_month = now.month;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let now = self.ledger.now();
        self.release(0, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OnLimit;

    fn budget(daily: f64) -> Budget {
        Budget {
            daily_usd: Some(daily),
            monthly_usd: Some(daily * 10.0),
            per_request_usd: Some(1.0),
            soft_limit: 0.8,
            soft_reasoning_threshold: 0.95,
            on_limit: OnLimit::Reject,
            default_max_tokens: 1000,
        }
    }

    #[test]
    fn months_and_days_from_the_epoch() {
        assert_eq!(civil_year_month(0), (1970, 1));
        assert_eq!(civil_year_month(31), (1970, 2));
        // 2026-11-28 is day 20_785.
        assert_eq!(civil_year_month(20_785), (2026, 11));
        assert_eq!(civil_year_month(20_788), (2026, 12));
        assert_eq!(civil_year_month(11_016), (2000, 2)); // 2000-02-29
    }

    #[test]
    fn reservations_count_against_the_limit_until_settled() {
        let (ledger, _) = ledger_on(20_785);
        let b = budget(1.0);
        let now = Period::of_day(20_785);
        let first = ledger.reserve(&b, nanos(0.6), now).unwrap();
        assert_eq!(
            ledger.reserve(&b, nanos(0.6), now).unwrap_err(),
            Refusal::Daily
        );
        first.settle_at(nanos(0.1), now);
        let second = ledger.reserve(&b, nanos(0.6), now).unwrap();
        let s = ledger.snapshot(now);
        assert_eq!((s.spent_day, s.reserved), (nanos(0.1), nanos(0.6)));
        drop(second);
        assert_eq!(ledger.snapshot(now).reserved, 0);
    }

    #[test]
    fn per_request_cap_and_soft_limit() {
        let (ledger, _) = ledger_on(20_785);
        let b = budget(1.0);
        let now = Period::of_day(20_785);
        assert_eq!(
            ledger.reserve(&b, nanos(1.5), now).unwrap_err(),
            Refusal::PerRequestCap
        );
        assert!(!ledger.past_soft_limit(&b, now));
        ledger.record(nanos(0.85), now);
        assert!(ledger.past_soft_limit(&b, now));
    }

    fn noon(day: u64) -> u64 {
        day.saturating_mul(86_400).saturating_add(43_200)
    }

    /// A ledger whose clock starts at 12:00 UTC of `day`; the handle moves it.
    fn ledger_on(day: u64) -> (Arc<Ledger>, Arc<std::sync::atomic::AtomicU64>) {
        let (clock, handle) = Clock::settable(noon(day));
        (Arc::new(Ledger::with_clock(clock)), handle)
    }

    fn set_day(handle: &std::sync::atomic::AtomicU64, day: u64) {
        handle.store(noon(day), std::sync::atomic::Ordering::Relaxed);
    }

    #[test]
    fn a_new_day_starts_from_zero_but_the_month_carries_on() {
        // 2026-11-28 -> 2026-11-29. The reservation is dropped unsettled: it releases by
        // the ledger's clock, never the machine's.
        let (ledger, _) = ledger_on(20_786);
        let b = budget(1.0);
        ledger.record(nanos(0.9), Period::of_day(20_785));
        let next = Period::of_day(20_786);
        assert!(ledger.reserve(&b, nanos(0.5), next).is_ok());
        let s = ledger.snapshot(next);
        assert_eq!((s.spent_day, s.spent_month), (0, nanos(0.9)));
        assert_eq!(s.reserved, 0, "the dropped hold is released");
    }

    #[test]
    fn a_new_month_and_a_new_year_start_both_windows_from_zero() {
        let b = budget(1.0);
        for (last_day, first_day) in [
            (20_787, 20_788), // 2026-11-30 -> 2026-12-01
            (20_818, 20_819), // 2026-12-31 -> 2027-01-01
            (11_016, 11_017), // 2000-02-29 -> 2000-03-01
        ] {
            let (ledger, clock) = ledger_on(last_day);
            let held = ledger.reserve(&b, nanos(0.5), ledger.now()).unwrap();
            ledger.record(nanos(0.4), ledger.now());
            held.settle(nanos(0.3));
            let s = ledger.snapshot(ledger.now());
            assert_eq!((s.spent_day, s.spent_month), (nanos(0.7), nanos(0.7)));
            // A hold taken before midnight and settled after it counts in the new windows.
            let late = ledger.reserve(&b, nanos(0.2), ledger.now()).unwrap();
            set_day(&clock, first_day);
            late.settle(nanos(0.1));
            let s = ledger.snapshot(ledger.now());
            assert_eq!(
                (s.spent_day, s.spent_month, s.reserved),
                (nanos(0.1), nanos(0.1), 0),
                "day {last_day} -> {first_day}"
            );
            // The whole daily budget is there again.
            assert!(ledger.reserve(&b, nanos(0.9), ledger.now()).is_ok());
        }
    }

    #[test]
    fn the_clock_gives_periods_and_the_wait_to_midnight() {
        let (clock, handle) = Clock::settable(20_818 * 86_400 + 86_399);
        assert_eq!(clock.period(), Period::of_day(20_818));
        assert_eq!(clock.seconds_to_next_day(), 1);
        handle.store(20_819 * 86_400, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(clock.seconds_to_next_day(), 86_400);
        assert_eq!(civil_year_month(20_819), (2027, 1));
        assert_ne!(clock.period().month, Period::of_day(20_818).month);
    }

    #[test]
    fn spend_redis_missed_is_carried_once_and_only_into_its_own_windows() {
        let (ledger, _) = ledger_on(20_785);
        let b = budget(1.0);
        let today = Period::of_day(20_785);
        ledger.record_unsynced(nanos(0.2), today);
        // A local hold taken while Redis was away carries its spend too.
        let local = ledger.reserve(&b, nanos(0.1), today).unwrap();
        local.carried_to_shared().settle_at(nanos(0.05), today);
        assert_eq!(ledger.take_unsynced(today), (nanos(0.25), nanos(0.25)));
        assert_eq!(ledger.take_unsynced(today), (0, 0), "taken once");
        // Not delivered: put back; the next day only the month still counts it.
        ledger.restore_unsynced((nanos(0.25), nanos(0.25)), today);
        let tomorrow = Period::of_day(20_786);
        assert_eq!(ledger.take_unsynced(tomorrow), (0, nanos(0.25)));
        // Put back again: still the month's only, never tomorrow's day.
        ledger.restore_unsynced((0, nanos(0.25)), tomorrow);
        assert_eq!(ledger.take_unsynced(tomorrow), (0, nanos(0.25)));
        // Redis's view replaces the local one (plus what Redis has not seen).
        ledger.record_unsynced(nanos(0.1), today);
        let view = crate::limits::redis_budget::SharedView {
            day: nanos(0.5),
            month: nanos(0.7),
            reserved: nanos(0.3),
        };
        ledger.mirror(view, today);
        let s = ledger.snapshot(today);
        assert_eq!((s.spent_day, s.spent_month), (nanos(0.6), nanos(0.8)));
        // Soft limit (0.8 of 1.0) counts the other replicas' holds.
        assert!(ledger.past_soft_limit(&b, today));
    }
}
