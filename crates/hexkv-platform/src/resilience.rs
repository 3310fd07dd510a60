//! The stability patterns of `hexkv-resilience`, as a service's driven ports use them on the
//! platform: the circuit breaker's state changes logged and counted the same way for every
//! service ([`observe_breaker`]), so dashboards and alerts carry over.

/// Follows a store breaker's state changes (hand it to
/// [`CircuitBreaker::on_transition`](hexkv_resilience::CircuitBreaker::on_transition)): a WARN
/// line when it opens, an INFO line for the other changes, and the metrics
/// `hexkv_store_breaker_state` (0 closed, 1 half open, 2 open) and
/// `hexkv_store_breaker_transitions_total{from, to}`.
pub fn observe_breaker((from, to): hexkv_resilience::breaker::Transition) {
    use hexkv_resilience::breaker::BreakerState;
    use hexkv_telemetry::metrics::{BREAKER_STATE, BREAKER_TRANSITIONS};

    let name = |state: BreakerState| match state {
        BreakerState::Closed => "closed",
        BreakerState::HalfOpen => "half_open",
        BreakerState::Open => "open",
    };
    let level = match to {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open => 2.0,
    };
    metrics::gauge!(BREAKER_STATE).set(level);
    metrics::counter!(BREAKER_TRANSITIONS, "from" => name(from), "to" => name(to)).increment(1);
    if to == BreakerState::Open {
        tracing::warn!(
            from = name(from),
            to = name(to),
            "store circuit breaker opened"
        );
    } else {
        tracing::info!(
            from = name(from),
            to = name(to),
            "store circuit breaker changed state"
        );
    }
}
