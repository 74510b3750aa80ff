//! Retrying EC2 calls: exponential backoff with jitter for throttling and
//! transient failures, and patient polling for states that pass by
//! themselves (a security group still in use by a terminating instance).
//!
//! The SDK's own retries are turned off (see `AwsProvider::from_sdk_config`)
//! so that this is the one place that decides, and mocks can exercise it.

use std::future::Future;
use std::time::Duration;

use super::error::Ec2Error;
use super::launch::random_u64;
use super::settings::RetryPolicy;

/// The delay before retry number `retry` (1-based): `base * 2^(retry-1)`,
/// capped, then drawn uniformly from its upper half.
fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    let factor = 2u32.saturating_pow(retry.saturating_sub(1));
    let delay = policy
        .base_delay
        .saturating_mul(factor)
        .min(policy.max_delay);
    let half = delay / 2;
    let spread = half.as_nanos() as u64;
    half + Duration::from_nanos(if spread == 0 {
        0
    } else {
        random_u64() % (spread + 1)
    })
}

/// Calls `call` until it succeeds, fails with an error that is neither
/// retryable nor accepted by `also_retry`, or `policy` runs out.
pub(crate) async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    also_retry: impl Fn(&Ec2Error) -> bool,
    call: F,
) -> Result<T, Ec2Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Ec2Error>>,
{
    retry_if(
        policy,
        |error| error.is_retryable() || also_retry(error),
        call,
    )
    .await
}

/// Calls `call` until it succeeds, fails with an error `should_retry`
/// rejects, or `policy` runs out.
pub(crate) async fn retry_if<T, F, Fut>(
    policy: &RetryPolicy,
    should_retry: impl Fn(&Ec2Error) -> bool,
    mut call: F,
) -> Result<T, Ec2Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Ec2Error>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if attempt < policy.max_attempts.max(1) && should_retry(&error) => {
                let delay = backoff(policy, attempt);
                tracing::debug!(%error, attempt, ?delay, "retrying an EC2 call");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Retries only what is always worth retrying.
pub(crate) fn transient(_: &Ec2Error) -> bool {
    false
}

/// A policy that polls every `interval` for about `total`.
pub(crate) fn polling(interval: Duration, total: Duration) -> RetryPolicy {
    let interval = interval.max(Duration::from_millis(1));
    let attempts = (total.as_millis() / interval.as_millis()).clamp(1, 10_000) as u32 + 1;
    RetryPolicy {
        max_attempts: attempts,
        base_delay: interval,
        max_delay: interval,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    fn throttled() -> Ec2Error {
        Ec2Error::from_code(
            "DescribeInstances",
            "RequestLimitExceeded",
            "slow down",
            Some(503),
        )
    }

    #[tokio::test]
    async fn throttling_is_retried_until_it_passes() {
        let calls = AtomicU32::new(0);
        let answer = retry(&quick(5), transient, || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(throttled())
            } else {
                Ok(42)
            }
        })
        .await;
        assert_eq!(answer.unwrap(), 42);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn retries_stop_when_the_policy_runs_out() {
        let calls = AtomicU32::new(0);
        let answer: Result<(), _> = retry(&quick(3), transient, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(throttled())
        })
        .await;
        assert!(matches!(answer, Err(Ec2Error::Throttled { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried_unless_asked() {
        let calls = AtomicU32::new(0);
        let in_use = || {
            Ec2Error::from_code(
                "DeleteSecurityGroup",
                "DependencyViolation",
                "in use",
                Some(400),
            )
        };
        let answer: Result<(), _> = retry(&quick(5), transient, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(in_use())
        })
        .await;
        assert!(answer.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let answer: Result<(), _> = retry(
            &quick(5),
            |e| e.has_code("DependencyViolation"),
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(in_use())
            },
        )
        .await;
        assert!(answer.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for retry in 1..10 {
            let delay = backoff(&policy, retry);
            let full = Duration::from_millis(100 * 2u64.pow(retry - 1)).min(policy.max_delay);
            assert!(delay >= full / 2 && delay <= full, "{retry}: {delay:?}");
        }
        assert_eq!(
            polling(Duration::from_secs(5), Duration::from_secs(600)).max_attempts,
            121
        );
    }
}
