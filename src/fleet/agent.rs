//! The running agent: turns a validated config into orgs (sharing HTTP clients and token caches),
//! runs one schedule task per org, applies reloads (unchanged orgs keep their token and phase) and
//! stops gracefully.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{
    AuthMode, CaFile, Config, LatencyHistograms, OrgConfig, Schedule, SecretSource,
};
use crate::fleet::client_secret::SecretHolder;
use crate::fleet::org::Org;
use crate::fleet::schedule::{run_schedule, spread_plans, Plan};
use crate::fleet::secret_watch::{self, Followed};
use crate::fleet::stop::StopSignal;
use crate::fleet::supervisor::{supervise, Recovering, Supervision};
use crate::metrics::{Metrics, OrgInfoLabels};
use crate::obf::client::{BuildError, Endpoint, ObfClient};
use crate::obf::token::{TokenCache, TokenPolicy};

/// Probes in flight at once, across all orgs. Interval fleets are spread over their interval, but a
/// slow API or many orgs on one cron expression still make probes pile up; without a bound, 10,000
/// orgs could open 20,000 connections at once (file descriptors, ~40 KB of buffers each). Queued
/// probes start as others finish; the wait counts as lateness, not in any latency. 64 keeps
/// 10,000 orgs under 64 MB (measured: 256 slots, 73 MB; 64 slots, 62 MB) and still completes
/// ~400 pings/s against an API answering in 150 ms.
pub const MAX_PROBES_IN_FLIGHT: usize = 64;

/// A token cache belongs to one client of one server (normalised host, client_id): the server
/// spaces token requests per client.
type ClientKey = (String, String);

fn policy_of(org: &OrgConfig) -> TokenPolicy {
    TokenPolicy {
        refresh_margin: org.token_refresh_margin,
        min_interval: org.token_min_interval,
        max_age: org.token_max_age,
        check_interval: org.credential_check_interval,
    }
}

/// What one credential's orgs share: its token cache and its secret, kept across reloads.
struct Credential {
    tokens: Arc<TokenCache>,
    secret: Arc<SecretHolder>,
    auth: AuthMode,
}

/// One HTTP client (and pool) per trust setting and one token cache and secret per client, kept
/// across reloads: an unchanged credential keeps its token, and a rotated one keeps the spacing
/// and backoff of the requests already sent (credentials of removed orgs are kept for that
/// reason too).
#[derive(Default)]
struct Shared {
    clients: HashMap<Option<CaFile>, ObfClient>,
    credentials: HashMap<ClientKey, Credential>,
    /// Credentials whose secret or auth mode changed since the last reload took this.
    changed: HashSet<ClientKey>,
}

impl Shared {
    fn client(&mut self, org: &OrgConfig) -> Result<ObfClient, BuildError> {
        if let Some(client) = self.clients.get(&org.ca_file) {
            return Ok(client.clone());
        }
        // The connect timeout is client-wide; each request's own total timeout still applies.
        let client = ObfClient::new(
            org.ca_file.as_ref(),
            Duration::from_secs(30),
            MAX_PROBES_IN_FLIGHT,
        )?;
        self.clients.insert(org.ca_file.clone(), client.clone());
        Ok(client)
    }

    /// The org's credential, with the org's token rules and secret. If the secret or the auth
    /// mode differs from the one in use, the token is dropped (the next request carries the new
    /// ones) and this returns true. A secret the file watcher installed already is no change.
    fn credential(&mut self, org: &OrgConfig) -> (Arc<TokenCache>, Arc<SecretHolder>, bool) {
        let key = org.credential_key();
        let secret = org.client_secret.clone();
        let source = org.secret_source.clone();
        match self.credentials.get_mut(&key) {
            Some(credential) => {
                credential.tokens.set_policy(policy_of(org));
                let auth_changed = credential.auth != org.auth;
                credential.auth = org.auth;
                let holder = &credential.secret;
                let changed = credential
                    .tokens
                    .change_credentials(|| holder.replace(secret, source) || auth_changed);
                if changed {
                    self.changed.insert(key);
                }
                (credential.tokens.clone(), holder.clone(), changed)
            }
            None => {
                let credential = Credential {
                    tokens: Arc::new(TokenCache::new(policy_of(org))),
                    secret: Arc::new(SecretHolder::new(secret, source)),
                    auth: org.auth,
                };
                let shared = (credential.tokens.clone(), credential.secret.clone(), false);
                self.credentials.insert(key, credential);
                shared
            }
        }
    }

    /// Drops HTTP clients no org uses any more.
    fn retain_used(&mut self, orgs: &BTreeMap<String, Running>) {
        self.clients
            .retain(|ca_file, _| orgs.values().any(|r| &r.org.config.ca_file == ca_file));
    }

    async fn build(
        &mut self,
        config: OrgConfig,
        metrics: &Metrics,
    ) -> Result<Arc<Org>, BuildError> {
        let client = self.client(&config)?;
        let endpoint = Endpoint::new(&config.host, &config.client_id, config.api, config.timeout)?;
        let (tokens, secret, _) = self.credential(&config);
        let org_metrics = metrics.add_org(
            info_labels(&config),
            planned_interval(&config.schedule),
            tokens.credential(),
        );
        Ok(Arc::new(Org::new(
            config,
            org_metrics,
            tokens,
            secret,
            client,
            endpoint,
        )))
    }
}

fn info_labels(config: &OrgConfig) -> OrgInfoLabels {
    OrgInfoLabels {
        org: config.name.to_string(),
        client_id: config.client_id.clone(),
        host: config.host.clone(),
        api: config.api.as_str().to_string(),
        custom: config.labels.clone(),
    }
}

/// Builds every org of `config` without scheduling them (for `probe`).
pub async fn build_orgs(config: &Config, metrics: &Metrics) -> Result<Vec<Arc<Org>>, BuildError> {
    let mut shared = Shared::default();
    metrics.set_latency_per_host(config.latency_histograms == LatencyHistograms::Host);
    let mut orgs = Vec::with_capacity(config.orgs.len());
    for org in &config.orgs {
        orgs.push(shared.build(org.clone(), metrics).await?);
    }
    Ok(orgs)
}

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

/// The plan of a restarted org: its first run at once (it has missed runs already), then its
/// schedule from there.
fn restart_plan(org: &Org) -> Plan {
    let config = &org.config;
    let now = Instant::now();
    Plan {
        schedule: config.schedule.clone(),
        jitter: config.jitter,
        first_run: now,
        phase: now,
    }
}

/// An org's name for its schedule's log lines, without a copy of the name per org.
struct OrgName(Arc<Org>);

impl std::fmt::Display for OrgName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name())
    }
}

/// The credentials of the configured orgs whose secret comes from a file, with their orgs.
fn followed(orgs: &BTreeMap<String, Arc<Org>>) -> Vec<Followed> {
    // Orgs of one credential share one holder: one entry per holder.
    let mut by_holder: HashMap<*const SecretHolder, Followed> = HashMap::new();
    for org in orgs.values() {
        let SecretSource::File(path) = org.secret.source() else {
            continue;
        };
        by_holder
            .entry(Arc::as_ptr(&org.secret))
            .or_insert_with(|| Followed {
                path,
                holder: org.secret.clone(),
                tokens: org.tokens.clone(),
                orgs: Vec::new(),
                client_id: org.config.client_id.clone(),
            })
            .orgs
            .push(org.name().to_string());
    }
    by_holder.into_values().collect()
}

/// The secret files to follow, rebuilt when the orgs change (a holder's file changes only with a
/// reload), so that the watcher's rounds do not rebuild it.
type FollowedList = Arc<RwLock<Arc<Vec<Followed>>>>;

struct Running {
    org: Arc<Org>,
    stop: StopSignal,
    task: JoinHandle<()>,
}

/// The orgs currently configured, readable without waiting for a reload to finish.
pub type OrgList = Arc<RwLock<BTreeMap<String, Arc<Org>>>>;

/// What a reload changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    /// Only `labels` changed: `obf_org_info` was updated, the org kept running as it was.
    pub relabelled: Vec<String>,
    /// The secret changed (read from the same source): the credential's token was dropped,
    /// the org kept its schedule.
    pub rotated: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
}

/// The schedule tasks of all orgs, and the task following their secret files.
pub struct Agent {
    metrics: Arc<Metrics>,
    shared: Shared,
    running: BTreeMap<String, Running>,
    published: OrgList,
    /// The secret files of `published`, for the watcher.
    followed_files: FollowedList,
    slots: Arc<Semaphore>,
    recovering: Recovering,
    secret_files: AbortOnDrop,
}

/// Aborts the task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Agent {
    /// Call within a Tokio runtime: it starts the task that follows the secret files.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let published = OrgList::default();
        let followed_files = FollowedList::default();
        let list = followed_files.clone();
        let secret_files = tokio::spawn(secret_watch::follow(move || {
            list.read().unwrap_or_else(|e| e.into_inner()).clone()
        }));
        Agent {
            metrics,
            shared: Shared::default(),
            running: BTreeMap::new(),
            published,
            followed_files,
            slots: Arc::new(Semaphore::new(MAX_PROBES_IN_FLIGHT)),
            recovering: Recovering::default(),
            secret_files: AbortOnDrop(secret_files),
        }
    }

    /// The orgs whose schedule task was restarted and has not completed a run since.
    pub fn recovering(&self) -> Recovering {
        self.recovering.clone()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A live view of the configured orgs.
    pub fn org_list(&self) -> OrgList {
        self.published.clone()
    }

    /// Makes the running orgs those of `config`: unchanged orgs keep their task, schedule phase
    /// and token; orgs whose labels or secret alone changed keep their task and phase too (new
    /// labels reach `obf_org_info` and the status page, a new secret drops the credential's
    /// token); changed orgs restart their schedule; removed orgs stop and lose their series;
    /// new and changed orgs start now (a large batch ramps up: `spread_plans`). Waits for the runs
    /// in progress of stopped orgs to finish.
    ///
    /// Takes the config by value: each org's settings move into its [`Org`] rather than being
    /// copied, so a start does not hold two copies of every org's settings at once.
    pub async fn apply(&mut self, config: Config) -> Result<Changes, BuildError> {
        let mut changes = Changes::default();
        let per_host = config.latency_histograms == LatencyHistograms::Host;
        let mut orgs = config.orgs;
        // By name, as they start (names are unique: the config was validated).
        orgs.sort_unstable_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        let wanted: HashSet<String> = orgs.iter().map(|o| o.name.to_string()).collect();

        // Build everything first, so a failure leaves the running set as it was.
        let mut starting = Vec::new();
        let mut kept = Vec::new();
        for org_config in orgs {
            let name = org_config.name.as_str();
            match self.running.get(name) {
                Some(running)
                    if running
                        .org
                        .config
                        .same_except_secret_and_labels(&org_config) =>
                {
                    kept.push(org_config);
                }
                existing => {
                    match existing {
                        Some(_) => changes.changed.push(name.to_string()),
                        None => changes.added.push(name.to_string()),
                    }
                    starting.push(self.shared.build(org_config, &self.metrics).await?);
                }
            }
        }

        // Built: the reload goes ahead, with its histogram keying (which re-keys every org).
        self.metrics.set_latency_per_host(per_host);

        // Kept orgs: a new secret replaces the credential's token (unless the file watcher
        // installed it already), new labels replace `obf_org_info`; the task keeps running.
        for config in &kept {
            self.shared.credential(config);
        }
        let rotated = std::mem::take(&mut self.shared.changed);
        for config in kept {
            let name = config.name.as_str();
            let Some(running) = self.running.get_mut(name) else {
                continue;
            };
            let org = &running.org;
            let relabelled = org.config.labels != config.labels;
            if relabelled {
                // The same series record and credential, with the new `obf_org_info` labels.
                self.metrics.add_org(
                    info_labels(&config),
                    planned_interval(&org.config.schedule),
                    org.tokens.credential(),
                );
                changes.relabelled.push(name.to_string());
            }
            let secret_changed = rotated.contains(&config.credential_key());
            if secret_changed {
                changes.rotated.push(name.to_string());
            }
            if !relabelled && !secret_changed {
                changes.unchanged += 1;
            }
            // The task keeps probing with the org it has (labels and the config's copy of the
            // secret play no part in a probe); the published org, which the status page and
            // the next reload read, has the new config.
            running.org = Arc::new(org.reconfigured(config));
        }

        let stopping: Vec<String> = self
            .running
            .keys()
            .filter(|name| !wanted.contains(name.as_str()) || changes.changed.contains(name))
            .cloned()
            .collect();
        let mut stopped = Vec::new();
        for name in &stopping {
            if let Some(running) = self.running.remove(name) {
                running.stop.stop();
                stopped.push(running);
            }
        }
        for running in stopped {
            let _ = running.task.await;
        }
        for name in stopping {
            if !wanted.contains(name.as_str()) {
                self.metrics.remove_org(&name);
                self.recovering.forget(&name);
                changes.removed.push(name);
            }
        }

        let schedules: Vec<_> = starting
            .iter()
            .map(|org| (org.config.schedule.clone(), org.config.jitter))
            .collect();
        let plans = spread_plans(Instant::now(), &schedules);
        for (org, plan) in starting.into_iter().zip(plans) {
            let running = self.spawn(org, plan);
            self.running.insert(running.org.name().to_string(), running);
        }
        self.shared.retain_used(&self.running);
        self.publish();
        Ok(changes)
    }

    /// Starts `org` on `plan`, under supervision: should its task panic, it is restarted on a
    /// fresh plan (first run at once). Unchanged orgs are never respawned, so they keep their phase.
    fn spawn(&self, org: Arc<Org>, plan: Plan) -> Running {
        let stop = StopSignal::new();
        let shutdown = stop.clone();
        let supervision = Supervision {
            name: org.name().to_string(),
            shutdown: shutdown.clone(),
            restarts: self.metrics.task_restarts.clone(),
            recovering: self.recovering.clone(),
        };
        let lateness = self.metrics.schedule_lateness.clone();
        let (task_org, slots, recovering) =
            (org.clone(), self.slots.clone(), self.recovering.clone());
        let mut first_plan = Some(plan);
        let task = tokio::spawn(supervise(supervision, move |_restarted| {
            let plan = first_plan.take().unwrap_or_else(|| restart_plan(&task_org));
            let (org, recovering) = (task_org.clone(), recovering.clone());
            let name = OrgName(task_org.clone());
            run_schedule(
                plan,
                name,
                lateness.clone(),
                shutdown.clone(),
                slots.clone(),
                move || {
                    let (org, recovering) = (org.clone(), recovering.clone());
                    async move {
                        // Boxed: the probe's state (HTTP futures, several KB) then exists only
                        // while it runs, instead of being part of every idle org's task.
                        Box::pin(org.probe()).await;
                        recovering.completed_run(org.name());
                    }
                },
            )
        }));
        Running { org, stop, task }
    }

    fn publish(&self) {
        let orgs = self
            .running
            .iter()
            .map(|(name, running)| (name.clone(), running.org.clone()))
            .collect();
        let files = Arc::new(followed(&orgs));
        *self.published.write().unwrap_or_else(|e| e.into_inner()) = orgs;
        *self
            .followed_files
            .write()
            .unwrap_or_else(|e| e.into_inner()) = files;
    }

    /// Stops scheduling and waits for runs in progress to finish (each is bounded by its timeouts).
    pub async fn stop(self) {
        self.secret_files.0.abort();
        for running in self.running.values() {
            running.stop.stop();
        }
        for (name, running) in self.running {
            if let Err(error) = running.task.await {
                tracing::error!(org = %name, %error, "schedule task ended abnormally");
            }
        }
    }
}
