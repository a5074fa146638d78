//! The client registry of the plugin configuration (`clients[]`): exact SPIFFE IDs and `/*`
//! path prefixes, each in a configured trust domain, with the client id each authenticates as.

use super::{collect, refuse, ConfigError};
use crate::spiffe_id::SpiffeId;
use serde::Deserialize;
use std::collections::HashMap;

/// The prefix of a `spiffe_id` registration `<base>/*`: `base` must be a SPIFFE ID (a trust
/// domain ID too, for the whole trust domain) of a configured trust domain, without wildcards.
fn client_prefix(field: &str, base: &str, configured: &[String]) -> Result<String, ConfigError> {
    if base.contains('*') {
        return Err(refuse(
            format!("{field}.spiffe_id"),
            "a wildcard is allowed only as a trailing /* (a path prefix)",
        ));
    }
    let id = SpiffeId::parse(base).map_err(|e| {
        refuse(
            format!("{field}.spiffe_id"),
            format!("not a SPIFFE ID followed by /*: {e}"),
        )
    })?;
    check_configured(field, &id, configured)?;
    Ok(format!("{base}/"))
}

/// A registration of every SPIFFE ID under a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPrefix {
    /// The registered `spiffe_id` without its trailing `*`, so ending in `/`
    /// (`spiffe://example.org/workloads/`). It matches by whole path segments only:
    /// `…/workloads/a` and `…/workloads/a/b`, never `…/workloads` or `…/workloads-evil/a`.
    pub prefix: String,
    /// The client id all of them authenticate as; each its own SPIFFE ID when not configured.
    pub client_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    spiffe_id: String,
    client_id: Option<String>,
}

/// A client's SPIFFE ID must be in a configured trust domain.
fn check_configured(field: &str, id: &SpiffeId, configured: &[String]) -> Result<(), ConfigError> {
    if configured.iter().any(|td| td == id.trust_domain_name()) {
        return Ok(());
    }
    Err(refuse(
        format!("{field}.spiffe_id"),
        format!(
            "trust domain {:?} is not in trust_domains",
            id.trust_domain_name()
        ),
    ))
}

/// One valid `clients[]` entry.
enum Registration {
    Exact(SpiffeId, String),
    Prefix(ClientPrefix),
}

/// The client registry from the valid `clients[]` entries; the others' problems (and repeated
/// registrations) go to `errors`. Prefixes come longest first: the most specific decides.
pub(super) fn validate_clients(
    raw: &[RawClient],
    configured: &[String],
    errors: &mut Vec<ConfigError>,
) -> (HashMap<SpiffeId, String>, Vec<ClientPrefix>) {
    let mut clients = HashMap::new();
    let mut client_prefixes: Vec<ClientPrefix> = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let field = format!("clients[{i}]");
        let repeated = match collect(errors, validate_client(&field, c, configured)) {
            Some(Registration::Prefix(prefix)) => {
                let repeated = client_prefixes.iter().any(|p| p.prefix == prefix.prefix);
                if !repeated {
                    client_prefixes.push(prefix);
                }
                repeated
            }
            Some(Registration::Exact(id, client_id)) => clients.insert(id, client_id).is_some(),
            None => false,
        };
        if repeated {
            errors.push(refuse(format!("{field}.spiffe_id"), "registered twice"));
        }
    }
    client_prefixes.sort_by_key(|p| std::cmp::Reverse(p.prefix.len()));
    (clients, client_prefixes)
}

fn validate_client(
    field: &str,
    c: &RawClient,
    configured: &[String],
) -> Result<Registration, ConfigError> {
    if let Some(base) = c.spiffe_id.strip_suffix("/*") {
        let prefix = client_prefix(field, base, configured)?;
        if c.client_id.as_deref() == Some("") {
            return Err(refuse(format!("{field}.client_id"), "must not be empty"));
        }
        return Ok(Registration::Prefix(ClientPrefix {
            prefix,
            client_id: c.client_id.clone(),
        }));
    }
    if c.spiffe_id.contains('*') {
        return Err(refuse(
            format!("{field}.spiffe_id"),
            "a wildcard is allowed only as a trailing /* (a path prefix)",
        ));
    }
    let id = SpiffeId::parse(&c.spiffe_id).map_err(|e| {
        refuse(
            format!("{field}.spiffe_id"),
            format!("not a SPIFFE ID: {e}"),
        )
    })?;
    if id.is_trust_domain_id() {
        return Err(refuse(
            format!("{field}.spiffe_id"),
            "a trust domain ID (no path) is not a client identity",
        ));
    }
    check_configured(field, &id, configured)?;
    let client_id = c.client_id.clone().unwrap_or_else(|| c.spiffe_id.clone());
    if client_id.is_empty() {
        return Err(refuse(format!("{field}.client_id"), "must not be empty"));
    }
    Ok(Registration::Exact(id, client_id))
}

/// A configured `client_id` that is itself a SPIFFE ID, other than the registration's own, and
/// that another registration already gives as its default client id (its own SPIFFE ID), would
/// make two identities one client that the AS cannot tell apart: refused. (Several
/// registrations sharing a configured non-SPIFFE-ID `client_id` is a deliberate choice.)
pub(super) fn check_client_id_collisions(
    raw: &[RawClient],
    clients: &HashMap<SpiffeId, String>,
    prefixes: &[ClientPrefix],
) -> Result<(), ConfigError> {
    for (i, c) in raw.iter().enumerate() {
        let Some(client_id) = &c.client_id else {
            continue;
        };
        let Ok(named) = SpiffeId::parse(client_id) else {
            continue;
        };
        if *client_id == c.spiffe_id {
            continue;
        }
        let own_default = match clients.get(&named) {
            Some(registered) => registered == client_id,
            None => prefixes
                .iter()
                .find(|p| client_id.starts_with(&p.prefix))
                .is_some_and(|p| p.client_id.is_none()),
        };
        if own_default {
            return Err(refuse(
                format!("clients[{i}].client_id"),
                format!(
                    "{} is already the client id of the SPIFFE ID {named} (its own registration): two identities would be one client",
                    crate::log_text::quote(client_id)
                ),
            ));
        }
    }
    Ok(())
}
