//! What each step of a probe did, as plain data: the token acquisition, the ping(s), the retry
//! after a refused cached token, the subscription check. The steps return these and touch
//! neither the metrics nor the report; [`super::account::account`] turns a whole [`Run`] into both. They
//! hold no secret and no token (failures carry only their safe `detail`).

use std::time::Duration;

use crate::obf::client::CallFailure;
use crate::obf::token::RequestRecord;

/// One run of the probe, from start to end.
// One `Run` exists per probe, on its stack, and is never stored or moved in bulk: the size of
// the small variant does not matter, and boxing the large one would cost an allocation per run.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub(crate) enum Run {
    /// A recent ping was answered 429: this run sent nothing; pings resume after `wait`.
    Withheld { wait: Duration },
    /// The run went ahead: token, ping(s), subscription check.
    Sent {
        token: TokenOutcome,
        pings: Pings,
        subscription: SubscriptionOutcome,
    },
}

/// How one call of the token cache went.
#[derive(Clone, Debug)]
pub(crate) struct TokenOutcome {
    /// The token request this call sent, if it sent one.
    pub(crate) request: Option<RequestRecord>,
    /// A token from the cache was handed out (also after a transient failure, when the token in
    /// hand still works).
    pub(crate) reused: bool,
}

/// One ping that was sent.
#[derive(Clone, Debug)]
pub(crate) struct PingOutcome {
    /// The request's time, token time excluded.
    pub(crate) elapsed: Duration,
    /// The 2xx status, or the failure.
    pub(crate) result: Result<u16, CallFailure>,
}

/// The ping part of a run.
#[derive(Clone, Debug)]
pub(crate) enum Pings {
    /// The token cache gave no token: no ping was sent.
    NoToken,
    /// One ping: a success, or a failure not worth a second try.
    Once(PingOutcome),
    /// The cached token was refused (401/403): a fresh token was asked for, and then `again`.
    Retried {
        /// The refused ping's time.
        elapsed: Duration,
        refused: CallFailure,
        token: TokenOutcome,
        again: Again,
    },
}

/// What followed the request for a fresh token after a refused cached one.
#[derive(Clone, Debug)]
pub(crate) enum Again {
    /// A fresh token came and was pinged with.
    Pinged(PingOutcome),
    /// The token endpoint was asked and gave no token: the ping could not be repeated.
    NoToken,
    /// No fresh token within this probe's time and nothing asked: the refusal stands.
    NotAsked,
}

/// The subscription check of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SubscriptionOutcome {
    /// Checks are off (`subscription_check_interval = "0s"`).
    Off,
    /// Not due yet; `ends` is the `paid_until` known from an earlier check.
    NotDue { ends: Option<i64> },
    /// Checked now; `ends` is the `paid_until` known after it (the new one, or the earlier one
    /// when the check failed).
    Checked {
        result: Result<i64, CallFailure>,
        ends: Option<i64>,
    },
}
