//! Turning each `[[org]]` into an [`OrgConfig`] (name, client_id, labels, secret, settings
//! over `[defaults]`) and the checks across orgs: unique names, and orgs that share a token
//! agreeing on everything the token depends on.

use std::collections::BTreeMap;

use secrecy::ExposeSecret;

use super::raw::RawOrg;
use super::report::{join, org_label, Problems};
use super::settings::{Layer, Level};
use super::{secret, OrgConfig, OrgName};

/// Label names the exporter sets itself on `obf_org_info`.
const RESERVED_LABELS: [&str; 4] = ["org", "client_id", "host", "api"];

/// Validates every org; returns those that are complete (all of them when nothing is wrong).
pub(crate) fn validate(
    raw: &[RawOrg],
    defaults: &Layer,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
    warnings: &mut Vec<String>,
) -> Vec<(usize, OrgConfig)> {
    let mut orgs = Vec::new();
    let mut first_use: BTreeMap<OrgName, usize> = BTreeMap::new();
    for (index, org) in raw.iter().enumerate() {
        let ctx = org_label(index, org.name.as_deref());
        let name = org_name(org, &ctx, p);
        if let Some(name) = &name {
            if let Some(first) = first_use.get(name) {
                p.at(
                    &join(&ctx, "name"),
                    format!(
                        "duplicate org name \"{name}\" (also used by org[{first}]); names must be unique"
                    ),
                );
            } else {
                first_use.insert(name.clone(), index);
            }
        }
        let client_id = client_id(org, &ctx, p);
        let labels = labels(org, &ctx, p);
        let settings = Layer::parse(&org.settings, &ctx, Level::Org, p).resolve(defaults, &ctx, p);
        let secret = secret::resolve(org, &ctx, env, p, warnings);

        if let (Some(name), Some(client_id), Some(labels), Some(s), Some((secret, source))) =
            (name, client_id, labels, settings, secret)
        {
            orgs.push((
                index,
                OrgConfig {
                    name,
                    host: s.host.value,
                    api: s.api,
                    auth: s.auth.value,
                    schedule: s.schedule,
                    jitter: s.jitter,
                    timeout: s.timeout,
                    token_refresh_margin: s.token_refresh_margin.value,
                    token_min_interval: s.token_min_interval.value,
                    token_max_age: s.token_max_age.value,
                    subscription_check_interval: s.subscription_check_interval,
                    credential_check_interval: s.credential_check_interval.value,
                    ca_file: s.ca_file.map(|c| c.value),
                    client_id,
                    client_secret: secret,
                    secret_source: source,
                    labels,
                },
            ));
        }
    }
    check_shared_tokens(&orgs, p);
    orgs
}

fn org_name(org: &RawOrg, ctx: &str, p: &mut Problems) -> Option<OrgName> {
    let Some(name) = &org.name else {
        p.missing(
            &join(ctx, "name"),
            "missing; every [[org]] needs a unique name",
        );
        return None;
    };
    match OrgName::parse(name) {
        Ok(name) => Some(name),
        Err(message) => {
            // An invalid name is not in `ctx`, so this reads `org[N].name`.
            p.at(&join(ctx, "name"), message);
            None
        }
    }
}

fn client_id(org: &RawOrg, ctx: &str, p: &mut Problems) -> Option<String> {
    let path = join(ctx, "client_id");
    let Some(id) = &org.client_id else {
        p.missing(&path, "missing; every [[org]] needs its OBF client_id");
        return None;
    };
    let valid = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Some(id.clone())
    } else {
        p.at(
            &path,
            format!("invalid client_id {id:?}: must match ^[A-Za-z0-9_]+$"),
        );
        None
    }
}

fn labels(org: &RawOrg, ctx: &str, p: &mut Problems) -> Option<BTreeMap<String, String>> {
    let labels = org.labels.clone().unwrap_or_default();
    let mut ok = true;
    for name in labels.keys() {
        let path = join(&join(ctx, "labels"), name);
        if RESERVED_LABELS.contains(&name.as_str()) {
            p.at(
                &path,
                format!(
                    "reserved label name: {} are set by the exporter",
                    RESERVED_LABELS.join(", ")
                ),
            );
            ok = false;
        } else if !is_label_name(name) {
            p.at(
                &path,
                "invalid label name: must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __",
            );
            ok = false;
        }
    }
    ok.then_some(labels)
}

/// A Prometheus label name that is not reserved for internal use (`__` prefix).
fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    first_ok && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') && !name.starts_with("__")
}

/// Orgs with the same host and client_id share one token, so everything that shapes the
/// token request or its reuse must agree; otherwise whichever org asked first would win.
fn check_shared_tokens(orgs: &[(usize, OrgConfig)], p: &mut Problems) {
    let mut first: BTreeMap<(&str, &str), &(usize, OrgConfig)> = BTreeMap::new();
    for entry in orgs {
        let (index, org) = entry;
        let key = (org.host.as_str(), org.client_id.as_str());
        let Some((first_index, other)) = first.get(&key).copied() else {
            first.insert(key, entry);
            continue;
        };
        let mut differ = Vec::new();
        if org.client_secret.expose_secret() != other.client_secret.expose_secret() {
            differ.push("client secret");
        }
        if org.auth != other.auth {
            differ.push("auth");
        }
        if org.token_refresh_margin != other.token_refresh_margin {
            differ.push("token_refresh_margin");
        }
        if org.token_min_interval != other.token_min_interval {
            differ.push("token_min_interval");
        }
        if org.token_max_age != other.token_max_age {
            differ.push("token_max_age");
        }
        if org.credential_check_interval != other.credential_check_interval {
            differ.push("credential_check_interval");
        }
        if org.ca_file != other.ca_file {
            differ.push("ca_file");
        }
        if !differ.is_empty() {
            p.at(
                &org_label(*index, Some(org.name.as_str())),
                format!(
                    "shares host {:?} and client_id {:?} (and so one token) with {}, but \
                     differs from it in: {}",
                    org.host,
                    org.client_id,
                    org_label(*first_index, Some(other.name.as_str())),
                    differ.join(", ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_follow_prometheus() {
        for ok in ["team", "_x", "a1_B"] {
            assert!(is_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "__meta", "ä"] {
            assert!(!is_label_name(bad), "{bad}");
        }
    }
}
