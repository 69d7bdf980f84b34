//! The live protection of the endpoints ([`WebGuards`]: the basic-auth users and the TLS config
//! in use), built from `[exporter.web]` at start and updated by every reload through the
//! controller's [`FollowsConfig`] hook. TLS cannot be switched on or off by a reload.

use super::{BasicAuth, TlsFiles, TlsHandle};
use crate::config::Config;
use crate::fleet::controller::{FollowsConfig, ReloadError};

/// The live protection of the endpoints, updated by reloads.
#[derive(Clone)]
pub struct WebGuards {
    /// Always present: with no users it lets everything through, so a reload can add users.
    pub auth: BasicAuth,
    /// Present when the server was started with TLS; TLS cannot be switched on or off by a reload.
    pub tls: Option<TlsHandle>,
}

impl WebGuards {
    /// Builds the guards for `config`'s `[exporter.web]` from the TLS config built when it was
    /// loaded (no file is read here).
    pub fn from_config(config: &Config) -> Result<Self, ReloadError> {
        let web = config.web.as_ref();
        let users = web.map(|w| w.basic_auth_users.clone()).unwrap_or_default();
        let tls = match (tls_files(config), web.and_then(|w| w.tls.clone())) {
            (Some(files), Some(server)) => Some(TlsHandle::with_config(files, server.0)),
            (None, _) => None,
            // `config::load` builds the TLS config whenever both files are set.
            (Some(_), None) => return Err(ReloadError::TlsNotLoaded),
        };
        Ok(WebGuards {
            auth: BasicAuth::new(&users),
            tls,
        })
    }
}

impl FollowsConfig for WebGuards {
    /// Applies a reloaded `[exporter.web]`: installs the TLS config read with it, swaps the users.
    fn apply(&self, config: &Config) -> Result<(), ReloadError> {
        let wanted = tls_files(config);
        match (&self.tls, &wanted) {
            (Some(tls), Some(files)) if tls.files() == files => {
                let server = config.web.as_ref().and_then(|w| w.tls.clone());
                let Some(server) = server else {
                    return Err(ReloadError::TlsNotLoaded);
                };
                tls.install(server.0);
            }
            (None, None) => {}
            _ => tracing::warn!(
                "exporter.web: switching TLS on or off or changing its file paths needs a restart; \
                 the running server keeps its current TLS setting"
            ),
        }
        let users = config
            .web
            .as_ref()
            .map(|w| w.basic_auth_users.clone())
            .unwrap_or_default();
        self.auth.set_users(&users);
        Ok(())
    }
}

fn tls_files(config: &Config) -> Option<TlsFiles> {
    let web = config.web.as_ref()?;
    Some(TlsFiles {
        cert: web.tls_cert_file.clone()?,
        key: web.tls_key_file.clone()?,
    })
}
