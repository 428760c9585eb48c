//! DNS answers and the endpoints a profile names by host: an answer
//! allows its addresses only when it answers a query the process sent,
//! from the resolver asked (`enforce::resolutions`), and only for its
//! time to live; one that does not is `dns/forged`.
use std::time::Instant;

use agentwatch_common::policy::NET_KEY_DATA;
use tracing::warn;

use super::{AgentEnforcer, DecidedBy};
use crate::{
    enforce::compile::host_key,
    event::{Detail, Event},
    profile::{matcher::Finding, observe, rule::Rule, Class},
};

/// An allow-map entry an answer made: (any port, prefix length, data).
pub(super) type AllowedKey = (bool, u32, [u8; NET_KEY_DATA]);

impl AgentEnforcer {
    /// A query the agent sent: its answer may now count.
    pub(super) fn note_query(&mut self, ev: &Event) {
        let Detail::Dns {
            name, id, server, ..
        } = &ev.detail
        else {
            return;
        };
        self.resolutions
            .asked(ev.pid, *id, name, server.clone(), Instant::now());
    }

    /// Allows the addresses of an answer for the profile's host rules it
    /// names, for its time to live, when it answers the agent's own query.
    /// False for a forged answer (alerted as `dns/forged`).
    pub(super) fn allow_answer(&mut self, ev: &Event) -> bool {
        let Detail::DnsAnswer {
            name,
            addrs,
            id,
            ttl,
            server,
        } = &ev.detail
        else {
            return true;
        };
        let name = observe::dns_name(name);
        let rules: Vec<_> = self
            .compiled
            .host_rules
            .iter()
            .filter(|r| {
                r.host.as_deref().is_some_and(|h| {
                    h == name || h.strip_prefix('*').is_some_and(|s| name.ends_with(s))
                })
            })
            .cloned()
            .collect();
        if rules.is_empty() || addrs.is_empty() {
            return true;
        }
        let now = Instant::now();
        if let Err(why) = self
            .resolutions
            .answered(ev.pid, *id, &name, server.as_deref(), now)
        {
            let f = Finding {
                rule: Rule::DnsForged,
                class: Class::Dns,
                what: format!("dns answer {name} -> {}", addrs.join(", ")),
                reason: format!("{why}: its addresses are not allowed"),
            };
            self.alert(ev, &f, "ignored", DecidedBy::Userspace, None);
            return false;
        }
        for r in &rules {
            for a in addrs.iter().filter_map(|a| a.parse().ok()) {
                let Some((any, key)) = host_key(self.agent_id, r, a) else {
                    continue;
                };
                match self.maps.allow_endpoint(any, &key, r.model) {
                    Ok(()) => self
                        .resolutions
                        .allow((any, key.prefix_len, key.data), *ttl, now),
                    Err(e) => warn!(error = %e, "cannot allow a resolved endpoint"),
                }
            }
        }
        true
    }

    /// Takes back the endpoints whose answers' time to live ran out (not
    /// those the profile names by address).
    pub(super) fn expire_answers(&mut self) {
        for (any, prefix_len, data) in self.resolutions.expired(Instant::now()) {
            let fixed =
                self.compiled.endpoints.iter().any(|e| {
                    e.any_port == any && e.key.prefix_len == prefix_len && e.key.data == data
                });
            if fixed {
                continue;
            }
            let key = agentwatch_common::policy::NetKey { prefix_len, data };
            if let Err(e) = self.maps.disallow_endpoint(any, &key) {
                warn!(error = %e, "cannot take back an expired resolved endpoint");
            }
        }
    }
}
