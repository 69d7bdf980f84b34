//! The outcome → report and metrics function, on hand-made runs: no I/O, no clock.

use super::*;
use crate::obf::token::{RequestRecord, TokenFailure};

const FINISHED_SECS: u64 = 1_700_000_000;

fn finished() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(FINISHED_SECS)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn request(duration: Duration, result: Result<(), TokenFailure>) -> TokenOutcome {
    TokenOutcome {
        request: Some(RequestRecord {
            duration,
            result,
            superseded: false,
        }),
        reused: false,
    }
}

fn fetched(duration: Duration) -> TokenOutcome {
    request(duration, Ok(()))
}

fn token_failed(duration: Duration, reason: Reason) -> TokenOutcome {
    request(
        duration,
        Err(TokenFailure {
            reason,
            retry_after: None,
            detail: format!("{reason} from the token endpoint"),
        }),
    )
}

fn reused() -> TokenOutcome {
    TokenOutcome {
        request: None,
        reused: true,
    }
}

fn not_allowed() -> TokenOutcome {
    TokenOutcome {
        request: None,
        reused: false,
    }
}

fn call_failure(reason: Reason, status: Option<u16>) -> CallFailure {
    CallFailure {
        reason,
        status,
        retry_after: None,
        detail: format!("ping: {reason}"),
    }
}

fn ping_ok(elapsed: Duration, status: u16) -> PingOutcome {
    PingOutcome {
        elapsed,
        result: Ok(status),
    }
}

fn ping_failed(elapsed: Duration, reason: Reason, status: Option<u16>) -> PingOutcome {
    PingOutcome {
        elapsed,
        result: Err(call_failure(reason, status)),
    }
}

fn sent(token: TokenOutcome, pings: Pings) -> Run {
    Run::Sent {
        token,
        pings,
        subscription: SubscriptionOutcome::NotDue { ends: None },
    }
}

fn run(run: &Run) -> Account {
    account("acme", run, Snapshot::default(), finished())
}

#[test]
fn a_fetched_token_and_a_good_ping_make_a_success_with_both_timings() {
    let account = run(&sent(fetched(ms(250)), Pings::Once(ping_ok(ms(40), 200))));
    let report = &account.report;
    assert!(report.success);
    assert_eq!(report.org, "acme");
    assert_eq!((report.reason, report.status), (None, Some(200)));
    assert_eq!(report.token, TokenUse::Fetched);
    assert_eq!(report.token_seconds, Some(0.25));
    assert_eq!(report.ping_seconds, Some(0.04));
    assert_eq!(report.detail, None);
    assert_eq!(report.finished_at, FINISHED_SECS as f64);
    assert_eq!(
        account.metrics,
        [
            MetricUpdate::TokenRefreshed {
                duration: ms(250),
                failure: None
            },
            MetricUpdate::PingSucceeded {
                status: 200,
                duration: ms(40)
            },
            MetricUpdate::ProbeFinished(finished()),
        ]
    );
}

#[test]
fn a_withheld_run_counts_a_rate_limited_ping_and_checks_nothing_else() {
    let account = run(&Run::Withheld { wait: ms(300) });
    assert!(!account.report.success);
    assert_eq!(account.report.reason, Some(Reason::RateLimited));
    assert_eq!(account.report.token, TokenUse::None);
    // Under a second still reads as one.
    assert_eq!(
        account.report.detail.as_deref(),
        Some("not sent: the API answered 429 to a recent ping; next ping in 1 s")
    );
    assert_eq!(
        account.metrics,
        [
            MetricUpdate::PingFailed {
                reason: Reason::RateLimited,
                status: None
            },
            MetricUpdate::ProbeFinished(finished()),
        ]
    );
}

#[test]
fn a_failed_token_request_is_the_detail_of_the_no_token_failure() {
    let account = run(&sent(
        token_failed(ms(100), Reason::ServerError),
        Pings::NoToken,
    ));
    let report = &account.report;
    assert_eq!(report.reason, Some(Reason::NoToken));
    assert_eq!(report.token, TokenUse::Failed);
    assert_eq!(report.token_failure, Some(Reason::ServerError));
    assert_eq!(
        report.detail.as_deref(),
        Some("token request: server_error from the token endpoint")
    );
    assert_eq!((report.status, report.ping_seconds), (None, None));
    assert_eq!(
        account.metrics,
        [
            MetricUpdate::TokenRefreshed {
                duration: ms(100),
                failure: Some(Reason::ServerError)
            },
            MetricUpdate::PingFailed {
                reason: Reason::NoToken,
                status: None
            },
            MetricUpdate::ProbeFinished(finished()),
        ]
    );
}

#[test]
fn no_token_without_a_request_says_the_next_request_is_not_allowed_yet() {
    let account = run(&sent(not_allowed(), Pings::NoToken));
    assert_eq!(account.report.token, TokenUse::None);
    assert_eq!(account.report.token_seconds, None);
    assert_eq!(
        account.report.detail.as_deref(),
        Some("no usable token: next token request not allowed yet")
    );
}

#[test]
fn a_refused_cached_token_then_a_fresh_one_that_works_is_a_plain_success() {
    let account = run(&sent(
        reused(),
        Pings::Retried {
            elapsed: ms(30),
            refused: call_failure(Reason::Forbidden, Some(403)),
            token: fetched(ms(200)),
            again: Again::Pinged(ping_ok(ms(50), 200)),
        },
    ));
    let report = &account.report;
    assert!(report.success);
    assert_eq!((report.reason, report.status), (None, Some(200)));
    assert_eq!(report.token, TokenUse::Fetched);
    assert_eq!(report.ping_seconds, Some(0.05));
    assert_eq!(report.detail, None);
    // The refused ping's time is observed; its failure is not counted: the run succeeded.
    assert_eq!(
        account.metrics,
        [
            MetricUpdate::TokenReused,
            MetricUpdate::PingDuration(ms(30)),
            MetricUpdate::TokenRefreshed {
                duration: ms(200),
                failure: None
            },
            MetricUpdate::PingSucceeded {
                status: 200,
                duration: ms(50)
            },
            MetricUpdate::ProbeFinished(finished()),
        ]
    );
}

#[test]
fn a_refused_cached_token_and_a_failed_fresh_request_is_no_token_with_the_refused_status() {
    let account = run(&sent(
        reused(),
        Pings::Retried {
            elapsed: ms(30),
            refused: call_failure(Reason::Forbidden, Some(403)),
            token: token_failed(ms(80), Reason::Rejected),
            again: Again::NoToken,
        },
    ));
    let report = &account.report;
    assert_eq!(
        (report.reason, report.status),
        (Some(Reason::NoToken), Some(403))
    );
    assert_eq!(report.token, TokenUse::Failed);
    assert_eq!(report.token_failure, Some(Reason::Rejected));
    assert_eq!(report.ping_seconds, Some(0.03));
    assert_eq!(
        report.detail.as_deref(),
        Some("token request: rejected from the token endpoint")
    );
    assert_eq!(
        account.metrics[3],
        MetricUpdate::PingFailed {
            reason: Reason::NoToken,
            status: Some(403)
        }
    );
}

#[test]
fn a_refused_cached_token_with_no_fresh_one_in_time_stands_as_the_failure() {
    let account = run(&sent(
        reused(),
        Pings::Retried {
            elapsed: ms(30),
            refused: call_failure(Reason::Unauthorized, Some(401)),
            token: not_allowed(),
            again: Again::NotAsked,
        },
    ));
    let report = &account.report;
    assert_eq!(
        (report.reason, report.status),
        (Some(Reason::Unauthorized), Some(401))
    );
    assert_eq!(report.token, TokenUse::Reused);
    assert_eq!(report.detail.as_deref(), Some("ping: unauthorized"));
    assert_eq!(
        account.metrics,
        [
            MetricUpdate::TokenReused,
            MetricUpdate::PingDuration(ms(30)),
            MetricUpdate::PingFailed {
                reason: Reason::Unauthorized,
                status: Some(401)
            },
            MetricUpdate::ProbeFinished(finished()),
        ]
    );
}

#[test]
fn a_failed_ping_counts_its_time_and_its_reason_once() {
    let account = run(&sent(
        reused(),
        Pings::Once(ping_failed(ms(70), Reason::ServerError, Some(502))),
    ));
    assert_eq!(account.report.status, Some(502));
    assert_eq!(account.report.reason, Some(Reason::ServerError));
    assert_eq!(
        account.metrics,
        [
            MetricUpdate::TokenReused,
            MetricUpdate::PingDuration(ms(70)),
            MetricUpdate::PingFailed {
                reason: Reason::ServerError,
                status: Some(502)
            },
            MetricUpdate::ProbeFinished(finished()),
        ]
    );
}

#[test]
fn a_refusal_of_a_replaced_secret_is_counted_without_a_reason_and_explained() {
    let mut token = token_failed(ms(90), Reason::Rejected);
    if let Some(request) = &mut token.request {
        request.superseded = true;
    }
    let account = run(&sent(token, Pings::NoToken));
    let report = &account.report;
    assert_eq!(report.token, TokenUse::Failed);
    assert_eq!(report.token_failure, None);
    assert!(report.detail.as_deref().is_some_and(
        |d| d.starts_with("token request: refused for a secret that has since been replaced")
    ));
    assert_eq!(
        account.metrics[0],
        MetricUpdate::TokenRefreshSuperseded { duration: ms(90) }
    );
}

#[test]
fn a_transient_failure_with_a_working_token_counts_the_request_and_the_reuse() {
    let mut token = token_failed(ms(60), Reason::Timeout);
    token.reused = true;
    let account = run(&sent(token, Pings::Once(ping_ok(ms(20), 204))));
    assert_eq!(account.report.token, TokenUse::Failed);
    assert_eq!(account.report.token_failure, Some(Reason::Timeout));
    // The successful ping clears the token request's detail.
    assert_eq!(account.report.detail, None);
    assert_eq!(
        account.metrics[..2],
        [
            MetricUpdate::TokenRefreshed {
                duration: ms(60),
                failure: Some(Reason::Timeout)
            },
            MetricUpdate::TokenReused,
        ]
    );
}

#[test]
fn the_subscription_outcome_sets_clears_or_counts_and_reports_the_known_end() {
    let with = |subscription| {
        run(&Run::Sent {
            token: reused(),
            pings: Pings::Once(ping_ok(ms(10), 200)),
            subscription,
        })
    };
    let off = with(SubscriptionOutcome::Off);
    assert!(off.metrics.contains(&MetricUpdate::ClearSubscriptionExpiry));
    assert_eq!(off.report.subscription_ends, None);

    let not_due = with(SubscriptionOutcome::NotDue { ends: Some(42) });
    assert_eq!(not_due.report.subscription_ends, Some(42));
    assert_eq!(not_due.metrics.len(), 3);

    let checked = with(SubscriptionOutcome::Checked {
        result: Ok(99),
        ends: Some(99),
    });
    assert_eq!(checked.report.subscription_ends, Some(99));
    assert!(checked
        .metrics
        .contains(&MetricUpdate::SubscriptionExpiry(99)));

    let failed = with(SubscriptionOutcome::Checked {
        result: Err(call_failure(Reason::Timeout, None)),
        ends: Some(42),
    });
    assert_eq!(failed.report.subscription_ends, Some(42));
    assert!(failed
        .metrics
        .contains(&MetricUpdate::SubscriptionCheckFailed(Reason::Timeout)));
    // The run's own result is the ping's: a failed subscription check does not fail it.
    assert!(failed.report.success);
}

#[test]
fn the_credential_state_at_the_end_is_what_the_report_shows() {
    let credential = Snapshot {
        credentials_valid: Some(true),
        token_expires_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2_000)),
        last_verified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000)),
    };
    let account = account(
        "acme",
        &sent(fetched(ms(1)), Pings::Once(ping_ok(ms(1), 200))),
        credential,
        finished(),
    );
    assert_eq!(account.report.credentials_valid, Some(true));
    assert_eq!(account.report.token_expires_at, Some(2_000.0));
    assert_eq!(account.report.credentials_last_verified, Some(1_000.0));
}
