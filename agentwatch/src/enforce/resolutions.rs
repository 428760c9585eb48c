//! Which DNS answers count, and for how long. An endpoint a profile names
//! by host is allowed at the addresses the agent's own DNS answers give;
//! an answer counts only when it answers a query the same process sent
//! (same id, same name) and comes from the resolver that query went to,
//! and the addresses it gives are allowed only for its time to live. So
//! an agent cannot send its own DNS socket a forged answer mapping an
//! allowed name to an address of its choice.
use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

/// How long a query waits for its answer.
const QUERY_LIFE: Duration = Duration::from_secs(30);
/// Queries remembered at most (per agent); the oldest go first.
const MAX_QUERIES: usize = 1024;
/// What an answer's addresses are allowed for at least (a TTL of 0 still
/// lets the connect that follows it through).
pub const TTL_FLOOR: Duration = Duration::from_secs(5);

/// A query in flight.
#[derive(Debug, Clone)]
struct Asked {
    pid: u32,
    id: u16,
    name: String,
    server: Option<String>,
    at: Instant,
}

/// Why an answer does not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmatched {
    /// No query of this process asked this name with this id.
    NoQuery,
    /// It came from elsewhere than the resolver the query went to.
    WrongServer { asked: String },
}

impl std::fmt::Display for Unmatched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unmatched::NoQuery => f.write_str("no query of this process asked it (id and name)"),
            Unmatched::WrongServer { asked } => {
                write!(f, "it did not come from {asked}, the resolver asked")
            }
        }
    }
}

/// The queries of one agent, and the deadlines of the endpoints its
/// answers allowed (by key: what the allow maps hold).
#[derive(Debug, Default)]
pub struct Resolutions<K> {
    asked: VecDeque<Asked>,
    allowed: HashMap<K, Instant>,
}

impl<K: std::hash::Hash + Eq + Clone> Resolutions<K> {
    /// A query `pid` sent.
    pub fn asked(&mut self, pid: u32, id: u16, name: &str, server: Option<String>, now: Instant) {
        while self
            .asked
            .front()
            .is_some_and(|a| now.duration_since(a.at) > QUERY_LIFE)
            || self.asked.len() >= MAX_QUERIES
        {
            self.asked.pop_front();
        }
        self.asked.push_back(Asked {
            pid,
            id,
            name: name.to_ascii_lowercase(),
            server,
            at: now,
        });
    }

    /// Whether an answer `pid` received counts: a query of its own with
    /// the same id and name, from the resolver that query went to (when
    /// the kernel could read both).
    pub fn answered(
        &self,
        pid: u32,
        id: u16,
        name: &str,
        server: Option<&str>,
        now: Instant,
    ) -> Result<(), Unmatched> {
        let name = name.to_ascii_lowercase();
        let mut wrong = None;
        for a in self.asked.iter().rev() {
            if a.pid != pid || a.id != id || a.name != name {
                continue;
            }
            if now.duration_since(a.at) > QUERY_LIFE {
                break;
            }
            match (&a.server, server) {
                (Some(asked), Some(from)) if asked != from => {
                    wrong = Some(asked.clone());
                }
                _ => return Ok(()),
            }
        }
        Err(match wrong {
            Some(asked) => Unmatched::WrongServer { asked },
            None => Unmatched::NoQuery,
        })
    }

    /// An answer allowed `key` for `ttl` seconds (at least `TTL_FLOOR`);
    /// a later answer extends it.
    pub fn allow(&mut self, key: K, ttl: u32, now: Instant) {
        let until = now + Duration::from_secs(ttl.into()).max(TTL_FLOOR);
        let e = self.allowed.entry(key).or_insert(until);
        if *e < until {
            *e = until;
        }
    }

    /// The keys whose time to live has run out, forgotten.
    pub fn expired(&mut self, now: Instant) -> Vec<K> {
        let gone: Vec<K> = self
            .allowed
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.allowed.remove(k);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Resolutions<u32> {
        Resolutions::default()
    }

    #[test]
    fn an_answer_counts_only_for_its_own_query_from_the_resolver_asked() {
        let t = Instant::now();
        let mut q = r();
        let dns = Some("127.0.0.53:53".to_string());
        q.asked(10, 7, "Api.Example.com", dns.clone(), t);
        assert_eq!(
            q.answered(10, 7, "api.example.com", dns.as_deref(), t),
            Ok(())
        );
        // Another id, name or process: a forged answer.
        assert_eq!(
            q.answered(10, 8, "api.example.com", dns.as_deref(), t),
            Err(Unmatched::NoQuery)
        );
        assert_eq!(
            q.answered(10, 7, "other.com", dns.as_deref(), t),
            Err(Unmatched::NoQuery)
        );
        assert_eq!(
            q.answered(11, 7, "api.example.com", dns.as_deref(), t),
            Err(Unmatched::NoQuery)
        );
        // The right id and name from the agent's own socket.
        assert_eq!(
            q.answered(10, 7, "api.example.com", Some("127.0.0.1:40000"), t),
            Err(Unmatched::WrongServer {
                asked: "127.0.0.53:53".into()
            })
        );
        // A query too old to be answered.
        let late = t + QUERY_LIFE + Duration::from_secs(1);
        assert_eq!(
            q.answered(10, 7, "api.example.com", dns.as_deref(), late),
            Err(Unmatched::NoQuery)
        );
    }

    #[test]
    fn addresses_expire_with_their_ttl_and_a_later_answer_extends_them() {
        let t = Instant::now();
        let mut q = r();
        q.allow(1, 60, t);
        q.allow(2, 0, t);
        assert!(q.expired(t + Duration::from_secs(4)).is_empty());
        assert_eq!(q.expired(t + TTL_FLOOR), vec![2]);
        q.allow(1, 120, t + Duration::from_secs(30));
        assert!(q.expired(t + Duration::from_secs(61)).is_empty());
        assert_eq!(q.expired(t + Duration::from_secs(150)), vec![1]);
        assert!(q.expired(t + Duration::from_secs(500)).is_empty());
    }

    #[test]
    fn old_queries_make_room() {
        let t = Instant::now();
        let mut q = r();
        for i in 0..(MAX_QUERIES as u16 + 10) {
            q.asked(1, i, "a.com", None, t);
        }
        assert_eq!(q.asked.len(), MAX_QUERIES);
        assert_eq!(q.answered(1, 0, "a.com", None, t), Err(Unmatched::NoQuery));
        assert_eq!(
            q.answered(1, MAX_QUERIES as u16 + 9, "a.com", None, t),
            Ok(())
        );
    }
}
