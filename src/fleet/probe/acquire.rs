//! Getting a token for a probe, and following a rotated secret before reporting a rejection.
//!
//! The secret is read from the credential's holder at each request, so a secret installed since
//! the last one (by a reload or the file watcher) is what is sent. When the token endpoint
//! refuses it and it came from a file, the file is read once more: if it holds another secret,
//! the refusal was a rotation the agent had not followed yet, not a revocation. The new secret
//! is installed, the token cache sees the refusal as superseded (no rejection recorded,
//! `obf_credentials_valid` as it was), and the next run asks with the new secret.

use secrecy::SecretString;

use super::outcome::TokenOutcome;
use crate::fleet::client_secret::{self, Reread};
use crate::fleet::org::Org;
use crate::obf::reason::Reason;
use crate::obf::token::{Token, TokenFailure};

impl Org {
    /// One call of the token cache, with the secret read at the request. Returns the token, if
    /// any, and what happened, for [`super::account::account`].
    pub(super) async fn acquire_token(
        &self,
        replace: Option<u64>,
    ) -> (Option<Token>, TokenOutcome) {
        let client = &self.client;
        let endpoint = &self.endpoint;
        let auth = self.config.auth;
        let acquired = self
            .tokens
            .acquire(self.config.timeout, replace, || async {
                let secret = self.secret.current();
                let result = client
                    .request_token(endpoint, &secret, auth)
                    .await
                    .map_err(TokenFailure::from);
                if matches!(&result, Err(failure) if failure.reason == Reason::Rejected) {
                    // Before the cache records the rejection.
                    self.follow_rotation(&secret).await;
                }
                result
            })
            .await;
        // Logged here, when it happens; the metrics and the report are the run's (`account`).
        if let Some(request) = &acquired.request {
            if let Err(failure) = &request.result {
                if request.superseded && failure.reason == Reason::Rejected {
                    tracing::debug!(
                        org = self.name(),
                        "token request refused for a replaced secret"
                    );
                } else {
                    tracing::debug!(org = self.name(), reason = %failure.reason, detail = %failure.detail, "token request failed");
                }
            }
        }
        let outcome = TokenOutcome {
            request: acquired.request,
            reused: acquired.reused,
        };
        (acquired.token, outcome)
    }

    /// `refused` was just refused by the token endpoint: if the secret's file now holds another
    /// one, installs it (in the token cache's critical section, so the refusal is superseded).
    /// A file that cannot be read changes nothing: the rejection stands (the watcher warns).
    async fn follow_rotation(&self, refused: &SecretString) {
        match self.secret.reread(refused).await {
            Reread::Changed { path, secret } => {
                let installed = self
                    .tokens
                    .change_credentials(|| self.secret.replace_from_file(&path, secret));
                if installed {
                    tracing::info!(
                        org = self.name(),
                        client_id = %self.config.client_id,
                        file = %client_secret::shown_path(&path),
                        "secret file changed: the token endpoint refused the previous secret; \
                         not a rejection, the next token request uses the new one"
                    );
                }
            }
            Reread::Failed(problem) => {
                tracing::debug!(org = self.name(), "re-reading the secret file: {problem}")
            }
            Reread::NotAFile | Reread::Unchanged => {}
        }
    }
}
