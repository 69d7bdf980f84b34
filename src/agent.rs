//! The running agent: turns a validated config into orgs (sharing HTTP clients and token caches),
//! starts one schedule task per org, and stops them gracefully.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Config, OrgConfig, Schedule};
use crate::metrics::{Metrics, OrgInfoLabels};
use crate::obf_client::{BuildError, ObfClient};
use crate::probe::Org;
use crate::schedule::{run_schedule, Plan};
use crate::token::{TokenCache, TokenPolicy};

/// Shares what must be shared between orgs: one HTTP client (and pool) per trust setting, one
/// token cache per credential (host + client_id).
#[derive(Default)]
pub struct Shared {
    clients: HashMap<Option<PathBuf>, ObfClient>,
    caches: HashMap<(String, String), Arc<TokenCache>>,
}

impl Shared {
    fn client(
        &mut self,
        org: &OrgConfig,
        connect_timeout: Duration,
    ) -> Result<ObfClient, BuildError> {
        if let Some(client) = self.clients.get(&org.ca_file) {
            return Ok(client.clone());
        }
        let client = ObfClient::new(org.ca_file.as_deref(), connect_timeout)?;
        self.clients.insert(org.ca_file.clone(), client.clone());
        Ok(client)
    }

    fn cache(&mut self, org: &OrgConfig) -> Arc<TokenCache> {
        let key = (org.host.clone(), org.client_id.clone());
        self.caches
            .entry(key)
            .or_insert_with(|| {
                Arc::new(TokenCache::new(TokenPolicy {
                    refresh_margin: org.token_refresh_margin,
                    min_interval: org.token_min_interval,
                    max_age: org.token_max_age,
                }))
            })
            .clone()
    }
}

/// Builds every org of `config`, registering its series in `metrics`.
pub fn build_orgs(config: &Config, metrics: &Metrics) -> Result<Vec<Arc<Org>>, BuildError> {
    let mut shared = Shared::default();
    // The connect timeout is a client-wide setting; each request's own total timeout still applies.
    let connect_timeout = config
        .orgs
        .iter()
        .map(|o| o.timeout)
        .max()
        .unwrap_or(Duration::from_secs(10));
    config
        .orgs
        .iter()
        .map(|org| {
            let client = shared.client(org, connect_timeout)?;
            let cache = shared.cache(org);
            let org_metrics = metrics.add_org(
                OrgInfoLabels {
                    org: org.name.to_string(),
                    client_id: org.client_id.clone(),
                    host: org.host.clone(),
                    api: org.api.as_str().to_string(),
                    custom: org.labels.clone(),
                },
                planned_interval(&org.schedule),
            );
            Ok(Arc::new(Org::new(org.clone(), org_metrics, cache, client)))
        })
        .collect()
}

/// Probes in flight at once, across all orgs. Orgs on one interval all fall due together; without a
/// bound, 10,000 orgs would open 20,000 connections at once (file descriptors, ~40 KB of buffers
/// each). Queued probes start as others finish; waiting is not counted in any latency.
pub const MAX_PROBES_IN_FLIGHT: usize = 256;

/// The planned gap between runs: the interval, or for cron the gap between its next two runs.
pub fn planned_interval(schedule: &Schedule) -> Duration {
    match schedule {
        Schedule::Interval(interval) => *interval,
        Schedule::Cron(cron) => {
            let now = std::time::SystemTime::now();
            cron.next_after(now)
                .and_then(|next| Some((next, cron.next_after(next)?)))
                .and_then(|(next, after)| after.duration_since(next).ok())
                .unwrap_or_default()
        }
    }
}

struct Running {
    org: Arc<Org>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The schedule tasks of all orgs.
pub struct Agent {
    metrics: Arc<Metrics>,
    running: BTreeMap<String, Running>,
}

impl Agent {
    /// Starts one schedule per org; first runs start now (plus jitter).
    pub fn start(metrics: Arc<Metrics>, orgs: Vec<Arc<Org>>) -> Self {
        let anchor = Instant::now();
        let slots = Arc::new(Semaphore::new(MAX_PROBES_IN_FLIGHT));
        let running = orgs
            .into_iter()
            .map(|org| {
                let (stop, shutdown) = watch::channel(false);
                let plan = Plan {
                    schedule: org.config.schedule.clone(),
                    jitter: org.config.jitter,
                    anchor,
                };
                let lateness = metrics.schedule_lateness.clone();
                let task_org = org.clone();
                let slots = slots.clone();
                let task = tokio::spawn(async move {
                    let name = task_org.name().to_string();
                    run_schedule(plan, &name, lateness, shutdown, || {
                        let (org, slots) = (task_org.clone(), slots.clone());
                        async move {
                            // The semaphore is never closed, so acquiring cannot fail.
                            let _slot = slots.acquire().await;
                            org.probe().await;
                        }
                    })
                    .await;
                });
                (org.name().to_string(), Running { org, stop, task })
            })
            .collect();
        Agent { metrics, running }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The orgs, by name.
    pub fn orgs(&self) -> Vec<Arc<Org>> {
        self.running.values().map(|r| r.org.clone()).collect()
    }

    /// Stops scheduling and waits for runs in progress to finish (each is bounded by its timeouts).
    pub async fn stop(self) {
        for running in self.running.values() {
            let _ = running.stop.send(true);
        }
        for (name, running) in self.running {
            if let Err(error) = running.task.await {
                tracing::error!(org = %name, %error, "schedule task ended abnormally");
            }
        }
    }
}
