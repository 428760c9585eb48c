//! Why an agent acts: its own model traffic, read in plain text by the
//! TLS uprobes (`sensors::tls`), kept per agent as the last exchange with
//! a model endpoint of its profile (`model: true` network rules): the
//! newest instruction, the model, and the tool calls the model asked
//! for. Alerts and approval requests carry it as `context`, bounded and
//! redacted, at the agent's level:
//!
//! - `off`: nothing is captured (the kernel sends nothing);
//! - `metadata` (the default): endpoint, model, sizes, tool names; no text
//!   is kept;
//! - `content`: also the instruction and each tool call's input, redacted.
//!
//! A connection whose first request is not to a model endpoint is set
//! aside in the kernel (`TLS_IGNORED`): its plain text is dropped here at
//! once and never sent again.
mod http;
mod redact;
mod shapes;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{event::Detail, event::Event, profile::Profile};
pub use shapes::ToolCall;

/// Characters of an instruction or tool input a context shows.
const EXCERPT: usize = 300;
/// Connections followed at once per agent (the oldest forgotten first).
const STREAMS: usize = 256;

/// How much of its model traffic an agent's context keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Off,
    #[default]
    Metadata,
    Content,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Metadata => "metadata",
            Level::Content => "content",
        }
    }

    /// The kernel's INTENT value.
    pub fn kernel(self) -> u32 {
        use agentwatch_common::tls;
        match self {
            Level::Off => tls::LEVEL_OFF,
            Level::Metadata => tls::LEVEL_METADATA,
            Level::Content => tls::LEVEL_CONTENT,
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Level::Off),
            "metadata" => Ok(Level::Metadata),
            "content" => Ok(Level::Content),
            _ => Err(format!("context {s:?}: give off, metadata or content")),
        }
    }
}

/// A model endpoint: a host name (lower case) or an address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    name: String,
    port: Option<u16>,
}

impl Endpoint {
    /// Whether an HTTP Host header (`name[:port]`, `[v6]:port`) is this.
    fn is(&self, host: &str) -> bool {
        let (name, port) = match host.rsplit_once(':') {
            Some((n, p)) if !p.contains(']') && p.parse::<u16>().is_ok() => {
                (n, p.parse::<u16>().ok())
            }
            _ => (host, None),
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let port = port.unwrap_or(443);
        name.eq_ignore_ascii_case(&self.name) && self.port.is_none_or(|p| p == port)
    }
}

/// The last exchange with a model.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    pub endpoint: String,
    pub model: Option<String>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub instruction: Option<String>,
    pub tools: Vec<ToolCall>,
    pub time: Option<std::time::SystemTime>,
}

/// What feeding a chunk asks of the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Fed {
    Nothing,
    /// Not a model connection: tell the kernel to drop it.
    NotModel {
        pid: u32,
        ssl: u64,
    },
}

/// One agent's intent: its level, its model endpoints, the connections
/// being read, and the last exchange.
#[derive(Debug, Default)]
pub struct IntentLog {
    level: Level,
    endpoints: Vec<Endpoint>,
    streams: HashMap<(u32, u64), (u64, http::Stream)>,
    /// Order of arrival, for forgetting the oldest connection.
    next: u64,
    last: Option<Exchange>,
    /// Texts never to show (lines of secret files the agent read).
    secrets: Vec<String>,
}

impl IntentLog {
    pub fn new(level: Level, profile: &Profile) -> Self {
        let endpoints = profile
            .network
            .iter()
            .filter(|r| r.model)
            .filter_map(|r| {
                let name = r.host.clone().or_else(|| r.address.clone())?;
                Some(Endpoint {
                    name: name.to_ascii_lowercase(),
                    port: r.port,
                })
            })
            .collect();
        Self {
            level,
            endpoints,
            ..Self::default()
        }
    }

    pub fn level(&self) -> Level {
        self.level
    }

    /// Reads a TLS chunk of the agent's.
    pub fn feed(&mut self, ev: &Event) -> Fed {
        let Detail::Tls {
            ssl,
            write,
            len,
            offset,
            data,
        } = &ev.detail
        else {
            return Fed::Nothing;
        };
        if self.level == Level::Off {
            return Fed::Nothing;
        }
        let key = (ev.pid, *ssl);
        self.next += 1;
        if !self.streams.contains_key(&key) && self.streams.len() >= STREAMS {
            if let Some(oldest) = self
                .streams
                .iter()
                .min_by_key(|(_, v)| v.0)
                .map(|(k, _)| *k)
            {
                self.streams.remove(&oldest);
            }
        }
        let next = self.next;
        let (_, stream) = self
            .streams
            .entry(key)
            .or_insert_with(|| (next, http::Stream::default()));
        let mut step = stream.push(*write, data, *len, *offset);
        if step == http::Step::Response && *write {
            // A new request ended the last exchange: read it, then the new one.
            self.finish(key);
            let (_, stream) = self
                .streams
                .entry(key)
                .or_insert_with(|| (next, http::Stream::default()));
            step = stream.push(true, data, *len, *offset);
        }
        match step {
            http::Step::Request => self.requested(key, ev),
            http::Step::Response => {
                self.finish(key);
                Fed::Nothing
            }
            http::Step::Nothing => Fed::Nothing,
        }
    }

    /// A request is in: to a model endpoint, it starts an exchange.
    fn requested(&mut self, key: (u32, u64), ev: &Event) -> Fed {
        let Some((_, s)) = self.streams.get(&key) else {
            return Fed::Nothing;
        };
        let host = s
            .request
            .head()
            .and_then(|h| h.host.clone())
            .unwrap_or_default();
        if !self.endpoints.iter().any(|e| e.is(&host)) {
            self.streams.remove(&key);
            return Fed::NotModel {
                pid: key.0,
                ssl: key.1,
            };
        }
        let asked = shapes::request(&s.request.body(), s.request.gap);
        let last = self.last.get_or_insert_with(Exchange::default);
        last.endpoint = host;
        last.model = asked.model.or(last.model.take());
        last.request_bytes = s.request.logical;
        last.response_bytes = 0;
        if asked.instruction.is_some() {
            last.instruction = asked.instruction;
        }
        let _ = ev;
        last.time = Some(std::time::SystemTime::now());
        Fed::Nothing
    }

    /// The response is in: its tool calls are the newest.
    fn finish(&mut self, key: (u32, u64)) {
        let Some((_, s)) = self.streams.get_mut(&key) else {
            return;
        };
        if s.request_done {
            let sse = s.response.head().is_some_and(|h| h.sse);
            let answered = shapes::response(&s.response.body(), sse);
            if let Some(last) = self.last.as_mut() {
                last.response_bytes = s.response.logical;
                if answered.model.is_some() {
                    last.model = answered.model;
                }
                if !answered.tools.is_empty() {
                    last.tools = answered.tools;
                }
            }
        }
        s.reset();
    }

    /// Remembers a secret file's content: its lines are never shown.
    pub fn note_secret(&mut self, content: &str) {
        for l in content.lines() {
            let l = l.trim();
            // The value of KEY=VALUE too, as it is often sent alone.
            let value = l.split_once('=').map(|(_, v)| v.trim().trim_matches('"'));
            for t in [Some(l), value].into_iter().flatten() {
                if t.len() >= 6 && !self.secrets.iter().any(|s| s == t) && self.secrets.len() < 1024
                {
                    self.secrets.push(t.to_string());
                }
            }
        }
    }

    /// A secret the agent read, found in the request it is writing on
    /// connection `ssl` of process `pid` (what it has written of it so
    /// far): the endpoint it goes to. None when there is none.
    pub fn leak(&self, pid: u32, ssl: u64) -> Option<String> {
        let (_, s) = self.streams.get(&(pid, ssl))?;
        let text = String::from_utf8_lossy(&s.request.bytes);
        self.secrets
            .iter()
            .any(|k| text.contains(k.as_str()))
            .then(|| {
                s.request
                    .head()
                    .and_then(|h| h.host.clone())
                    .unwrap_or_else(|| "its model".into())
            })
    }

    /// The context of an alert or request now: None when the level is off
    /// or no exchange with a model was seen.
    pub fn context(&self) -> Option<Value> {
        let last = self.last.as_ref()?;
        let tools: Vec<&str> = last.tools.iter().map(|t| t.name.as_str()).collect();
        let mut v = json!({
            "level": self.level.name(),
            "endpoint": last.endpoint,
            "model": last.model,
            "request_bytes": last.request_bytes,
            "response_bytes": last.response_bytes,
            "tools": tools,
            "time": last.time.map(crate::timestamp::micros),
        });
        match self.level {
            Level::Off => return None,
            Level::Metadata => {}
            Level::Content => {
                let r = |t: &str| redact::redact(t, &self.secrets, EXCERPT);
                v["instruction"] = json!(last.instruction.as_deref().map(r));
                v["tool_calls"] = json!(last
                    .tools
                    .iter()
                    .map(|t| json!({"name": t.name, "input": r(&t.input)}))
                    .collect::<Vec<_>>());
            }
        }
        Some(v)
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
