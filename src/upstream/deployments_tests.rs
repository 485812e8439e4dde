//! Unit tests of deployment choice, peak-EWMA, breaker and retry budget (paused time).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower::retry::budget::Budget;

use super::*;
use crate::config::{Provider, ProviderKind};

fn cfg(failures: u32, open_ms: u64) -> Resilience {
    Resilience {
        max_retries: 2,
        retry_budget_ratio: 0.2,
        breaker_failures: failures,
        breaker_open: Duration::from_millis(open_ms),
        max_retry_after: Duration::from_secs(60),
    }
}

fn deployment(provider: &str, weight: u32) -> Arc<Deployment> {
    Arc::new(Deployment {
        id: Arc::from(format!("m@{provider}")),
        provider: Arc::new(Provider {
            name: provider.into(),
            kind: ProviderKind::OpenAi,
            base_url: "http://127.0.0.1:1".into(),
            endpoint: None,
            auth_header: http::header::AUTHORIZATION,
            api_key: None,
            api_key_env: None,
            send_request_id: true,
            send_trace_context: true,
        }),
        upstream_model: "m".into(),
        weight,
    })
}

fn ready(pick: Pick) -> Attempt {
    match pick {
        Pick::Ready(a) => a,
        Pick::Wait(_) => panic!("expected a deployment, got Wait"),
        Pick::Unavailable => panic!("expected a deployment, got Unavailable"),
    }
}

const FAIL: Outcome = Outcome::Failure { retry_after: None };

#[test]
fn two_choices_prefer_lower_load_per_weight() {
    // Whatever the draw, of two deployments the lower load wins.
    let pool = [(1, 0.5), (1, 0.1)];
    for r in 0..10 {
        assert_eq!(choose(&pool, r, r + 1), 1);
    }
    // Equal load: weight 3 halves... thirds the score, so it wins.
    let pool = [(1, 0.3), (3, 0.3)];
    assert_eq!(choose(&pool, 0, 0), 1);
    // Unmeasured (zero load) ties keep the weighted first draw: weight decides the share.
    let pool = [(1, 0.0), (3, 0.0)];
    let firsts = (0..4u64).map(|r| choose(&pool, r, 0)).collect::<Vec<_>>();
    assert_eq!(firsts, vec![0, 1, 1, 1]);
}

#[test]
fn two_choices_never_compare_a_deployment_with_itself() {
    let pool = [(1, 9.0), (1000, 9.0), (1, 0.0)];
    // r1 lands on the heavy one; r2 must be drawn from the other two.
    for r2 in 0..2 {
        let chosen = choose(&pool, 5, r2);
        assert!(chosen == 1 || chosen == 0 || chosen == 2);
    }
    assert_eq!(
        choose(&pool, 5, 1),
        2,
        "the idle light one beats the loaded heavy one"
    );
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_jumps_up_and_decays_down() {
    let t0 = Instant::now();
    let mut s = Stats::new(t0);
    s.observe(Duration::from_millis(100), t0);
    assert!((s.cost - 0.1).abs() < 1e-9);
    s.observe(Duration::from_secs(1), t0);
    assert!(
        (s.cost - 1.0).abs() < 1e-9,
        "a slower sample is taken at once"
    );
    let later = t0 + DECAY;
    s.observe(Duration::from_millis(100), later);
    assert!(
        s.cost < 1.0 && s.cost > 0.1,
        "a faster sample pulls it down gradually"
    );
    // Load includes requests in flight and decays without samples.
    let base = s.load(later);
    s.pending = 1;
    assert!((s.load(later) - 2.0 * base).abs() < 1e-9);
    assert!(s.load(later + DECAY * 5) < base / 10.0);
}

#[tokio::test(start_paused = true)]
async fn single_deployment_needs_no_choice_and_is_retried_when_alone() {
    let reg = Registry::default();
    let d = deployment("a", 1);
    let a = ready(reg.pick(std::slice::from_ref(&d), &[]));
    assert_eq!(a.deployment.id, d.id);
    a.finish(FAIL, &cfg(5, 1000));
    // Already tried, but it is the only one: a retry goes to it again.
    let again = ready(reg.pick(std::slice::from_ref(&d), std::slice::from_ref(&d.id)));
    assert_eq!(again.deployment.id, d.id);
}

#[tokio::test(start_paused = true)]
async fn retries_go_to_another_deployment_first() {
    let reg = Registry::default();
    let (a, b) = (deployment("a", 1), deployment("b", 1));
    for _ in 0..20 {
        let pick = ready(reg.pick(&[a.clone(), b.clone()], std::slice::from_ref(&a.id)));
        assert_eq!(pick.deployment.id, b.id);
    }
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_then_lets_one_probe_through_then_closes() {
    let reg = Registry::default();
    let c = cfg(3, 200);
    let d = deployment("a", 1);
    let ds = [d.clone()];
    for i in 1..=3 {
        let breaker = ready(reg.pick(&ds, &[])).finish(FAIL, &c);
        assert_eq!(
            breaker.gauge(),
            if i < 3 { 0 } else { 1 },
            "after {i} failures"
        );
    }
    assert!(
        matches!(reg.pick(&ds, &[]), Pick::Unavailable),
        "open: skipped"
    );
    tokio::time::advance(Duration::from_millis(199)).await;
    assert!(
        matches!(reg.pick(&ds, &[]), Pick::Unavailable),
        "still open"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    let probe = ready(reg.pick(&ds, &[]));
    assert_eq!(probe.breaker, Breaker::HalfOpen { probing: true });
    assert!(
        matches!(reg.pick(&ds, &[]), Pick::Unavailable),
        "only one probe at a time"
    );
    assert_eq!(probe.finish(Outcome::Success, &c), Breaker::Closed);
    let a = ready(reg.pick(&ds, &[]));
    assert_eq!(a.breaker, Breaker::Closed);
}

#[tokio::test(start_paused = true)]
async fn failed_probe_reopens_and_abandoned_probe_frees_the_slot() {
    let reg = Registry::default();
    let c = cfg(1, 100);
    let ds = [deployment("a", 1)];
    ready(reg.pick(&ds, &[])).finish(FAIL, &c);
    tokio::time::advance(Duration::from_millis(100)).await;
    let probe = ready(reg.pick(&ds, &[]));
    assert!(matches!(probe.finish(FAIL, &c), Breaker::Open { .. }));
    assert!(matches!(reg.pick(&ds, &[]), Pick::Unavailable));
    tokio::time::advance(Duration::from_millis(100)).await;
    drop(ready(reg.pick(&ds, &[])));
    let next = ready(reg.pick(&ds, &[]));
    assert_eq!(next.breaker.gauge(), 2, "the next request is the probe");
}

#[tokio::test(start_paused = true)]
async fn an_answered_error_is_not_a_breaker_failure() {
    let reg = Registry::default();
    let c = cfg(2, 100);
    let ds = [deployment("a", 1)];
    ready(reg.pick(&ds, &[])).finish(FAIL, &c);
    ready(reg.pick(&ds, &[])).finish(Outcome::Answered, &c);
    assert_eq!(ready(reg.pick(&ds, &[])).finish(FAIL, &c), Breaker::Closed);
}

#[tokio::test(start_paused = true)]
async fn open_breaker_is_skipped_for_the_other_deployment() {
    let reg = Registry::default();
    let c = cfg(1, 10_000);
    let (a, b) = (deployment("a", 1000), deployment("b", 1));
    let ds = [a.clone(), b.clone()];
    ready(reg.pick(std::slice::from_ref(&a), &[])).finish(FAIL, &c);
    for _ in 0..20 {
        assert_eq!(ready(reg.pick(&ds, &[])).deployment.id, b.id);
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_holds_a_deployment_back() {
    let reg = Registry::default();
    let c = cfg(10, 5_000);
    let ds = [deployment("a", 1)];
    let hold = Duration::from_secs(2);
    let t0 = Instant::now();
    ready(reg.pick(&ds, &[])).finish(
        Outcome::Failure {
            retry_after: Some(hold),
        },
        &c,
    );
    match reg.pick(&ds, &[]) {
        Pick::Wait(t) => assert_eq!(t, t0 + hold),
        _ => panic!("expected Wait"),
    }
    tokio::time::advance(hold).await;
    ready(reg.pick(&ds, &[]));
}

#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_is_capped_and_never_panics() {
    let reg = Registry::default();
    // Cap below the breaker's open time: the cap decides.
    let c = Resilience {
        max_retry_after: Duration::from_secs(5),
        ..cfg(10, 30_000)
    };
    let ds = [deployment("a", 1)];
    let t0 = Instant::now();
    ready(reg.pick(&ds, &[])).finish(
        Outcome::Failure {
            retry_after: Some(Duration::from_secs(u64::MAX)),
        },
        &c,
    );
    match reg.pick(&ds, &[]) {
        Pick::Wait(t) => assert_eq!(t, t0 + Duration::from_secs(5)),
        _ => panic!("expected Wait"),
    }
    // Cap above the breaker's open time: a hold never outlasts an open breaker.
    let c = Resilience {
        max_retry_after: Duration::from_secs(600),
        ..cfg(10, 2_000)
    };
    assert_eq!(
        hold(Duration::from_secs(1_000_000_000), &c),
        Duration::from_secs(2)
    );
    assert_eq!(hold(Duration::from_secs(1), &c), Duration::from_secs(1));
    // An absurd breaker_open does not panic either.
    let c = Resilience {
        breaker_open: Duration::from_millis(u64::MAX),
        ..cfg(1, 1)
    };
    let b = [deployment("b", 1)];
    let breaker = ready(reg.pick(&b, &[])).finish(FAIL, &c);
    assert!(matches!(breaker, Breaker::Open { .. }));
}

#[tokio::test(start_paused = true)]
async fn a_new_config_generation_clears_holds_and_breakers() {
    let reg = Registry::default();
    let c = cfg(1, 30_000);
    let ds = [deployment("a", 1)];
    reg.observe_generation(1);
    ready(reg.pick(&ds, &[])).finish(
        Outcome::Failure {
            retry_after: Some(Duration::from_secs(20)),
        },
        &c,
    );
    assert!(matches!(
        reg.pick(&ds, &[]),
        Pick::Unavailable | Pick::Wait(_)
    ));
    // A request still on the old snapshot changes nothing.
    reg.observe_generation(1);
    assert!(matches!(
        reg.pick(&ds, &[]),
        Pick::Unavailable | Pick::Wait(_)
    ));
    // The reload's first request finds the deployment usable, breaker closed.
    reg.observe_generation(2);
    let attempt = ready(reg.pick(&ds, &[]));
    assert_eq!(attempt.breaker, Breaker::Closed);
}

#[tokio::test(start_paused = true)]
async fn retry_budget_bounds_retries_to_a_fraction_of_requests() {
    let reg = Registry::default();
    let budget = reg.budget(0.5);
    // The reserve: MIN_RETRIES_PER_SEC over the window, whatever the traffic.
    let reserve = (MIN_RETRIES_PER_SEC as u64 * BUDGET_WINDOW.as_secs()) as usize;
    let mut granted = 0;
    while budget.withdraw() {
        granted += 1;
        assert!(granted <= reserve, "reserve is bounded");
    }
    assert_eq!(granted, reserve);
    // Then 10 requests buy 5 retries at ratio 0.5.
    for _ in 0..10 {
        budget.deposit();
    }
    let more = std::iter::from_fn(|| budget.withdraw().then_some(())).count();
    assert_eq!(more, 5);
    // The same ratio gives the same budget; a new ratio a new one.
    assert!(Arc::ptr_eq(&budget, &reg.budget(0.5)));
    assert!(!Arc::ptr_eq(&budget, &reg.budget(0.1)));
}
