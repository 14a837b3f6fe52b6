//! Retries with exponential backoff and jitter for the failures that are worth retrying.

use std::future::Future;
use std::time::Duration;

/// How hard to retry a failing call.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in total (1 means no retry).
    pub attempts: u32,
    /// First delay; doubles each time up to `max_delay`.
    pub base_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// Whether a kube-rs error is worth another try: throttling, server errors, timeouts and
/// connection failures are; a 4xx answer is the server's final word.
pub(crate) fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        // A response cut short by a fault decodes badly; the next attempt is clean.
        kube::Error::SerdeError(_) => true,
        _ => false,
    }
}

impl Retry {
    /// The delay before retry `n` (1-based): exponential, minus up to 50% random jitter so that
    /// concurrent callers do not retry in lockstep.
    pub fn delay(&self, n: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << n.saturating_sub(1).min(16));
        let d = exp.min(self.max_delay);
        let jitter = d.mul_f64(fastrand::f64() * 0.5);
        d.saturating_sub(jitter)
    }

    /// Run `f` until it succeeds, fails for good, or the attempts run out.
    pub(crate) async fn run<T, F, Fut>(&self, f: F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        self.run_if(retryable, f).await
    }

    /// [`Retry::run`], retrying only the errors `worth` accepts.
    pub(crate) async fn run_if<T, F, Fut>(
        &self,
        worth: impl Fn(&kube::Error) -> bool,
        mut f: F,
    ) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut n = 0;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if worth(&e) && n + 1 < self.attempts => {
                    n += 1;
                    tracing::debug!(attempt = n, error = %e, "retrying");
                    tokio::time::sleep(self.delay(n)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_bounded() {
        let r = Retry::default();
        assert!(r.delay(1) <= Duration::from_millis(150));
        assert!(r.delay(3) >= Duration::from_millis(200));
        for n in 0..40 {
            assert!(r.delay(n) <= r.max_delay);
        }
    }

    #[tokio::test]
    async fn retries_server_errors_then_succeeds() {
        let r = Retry {
            attempts: 5,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let mut calls = 0;
        let out = r
            .run(|| {
                calls += 1;
                let c = calls;
                async move {
                    if c < 3 {
                        Err(kube::Error::Api(Box::new(
                            kube::core::Status::failure("busy", "TooManyRequests").with_code(429),
                        )))
                    } else {
                        Ok(c)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(out, 3);
    }

    #[tokio::test]
    async fn does_not_retry_client_errors() {
        let r = Retry::default();
        let mut calls = 0;
        let out: Result<(), _> = r
            .run(|| {
                calls += 1;
                async {
                    Err(kube::Error::Api(Box::new(
                        kube::core::Status::failure("nope", "NotFound").with_code(404),
                    )))
                }
            })
            .await;
        assert!(out.is_err());
        assert_eq!(calls, 1);
    }
}
