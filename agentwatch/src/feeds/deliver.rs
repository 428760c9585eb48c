//! Receivers: how a batch of spooled records reaches a webhook (JSON
//! lines), a Splunk HTTP Event Collector, or a syslog server (RFC 5424
//! over UDP, TCP with octet counting (RFC 6587), or TLS (RFC 5425, the
//! same framing)). HTTPS and TLS verify the server (`super::tls`). A
//! batch is delivered whole or not at all; the spool keeps it until then.
use std::{
    io::Write,
    net::{TcpStream, ToSocketAddrs, UdpSocket},
    time::Duration,
};

use serde_json::{json, Value};

use super::{tls::Roots, Secret};

/// Delivers batches of records (JSON lines without newlines).
pub trait Receiver: Send {
    fn send(&mut self, records: &[String]) -> Result<(), String>;
}

/// POSTs the records as JSON lines (application/x-ndjson), with the
/// configured headers and, from `token`, `Authorization: Bearer`.
pub struct Webhook {
    agent: ureq::Agent,
    url: String,
    headers: Vec<(String, String)>,
    token: Option<Secret>,
}

impl Webhook {
    pub fn new(
        url: &str,
        headers: Vec<(String, String)>,
        token: Option<Secret>,
        roots: &Roots,
    ) -> Self {
        Self {
            agent: roots.http_agent(),
            url: url.to_string(),
            headers,
            token,
        }
    }
}

impl Receiver for Webhook {
    fn send(&mut self, records: &[String]) -> Result<(), String> {
        let mut body = records.join("\n");
        body.push('\n');
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/x-ndjson");
        let has_auth = self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let (Some(t), false) = (&self.token, has_auth) {
            req = req.header("Authorization", &format!("Bearer {}", t.read()?));
        }
        req.send(body.as_bytes())
            .map(drop)
            .map_err(|e| format!("POST {}: {e}", self.url))
    }
}

/// POSTs the records to a Splunk HTTP Event Collector, each wrapped as
/// HEC wants (`{"time", "host", "source", "sourcetype", "event"}`).
pub struct SplunkHec {
    agent: ureq::Agent,
    url: String,
    token: Secret,
    host: String,
}

impl SplunkHec {
    pub fn new(url: &str, token: Secret, host: &str, roots: &Roots) -> Self {
        Self {
            agent: roots.http_agent(),
            url: url.to_string(),
            token,
            host: host.to_string(),
        }
    }
}

/// When a record happened: an alert's RFC 3339 `time`, an OCSF record's
/// `time` in ms; now for a record with neither.
fn record_system_time(v: &Value) -> std::time::SystemTime {
    let t = &v["time"];
    t.as_str()
        .and_then(crate::timestamp::parse)
        .or_else(|| {
            let ms = u64::try_from(t.as_i64()?).ok()?;
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        })
        .unwrap_or_else(std::time::SystemTime::now)
}

/// Seconds since the epoch a record is about (HEC's `time`).
fn record_time(v: &Value) -> f64 {
    record_system_time(v)
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A record's time in RFC 3339 with microseconds (the syslog header's).
fn record_rfc3339(v: &Value) -> String {
    crate::timestamp::micros(record_system_time(v))
}

impl Receiver for SplunkHec {
    fn send(&mut self, records: &[String]) -> Result<(), String> {
        let mut body = String::new();
        for r in records {
            let event: Value = serde_json::from_str(r).unwrap_or(Value::String(r.clone()));
            let sourcetype = if event.get("class_uid").is_some() {
                "agentwatch:ocsf"
            } else {
                "agentwatch:alert"
            };
            let wrapped = json!({
                "time": record_time(&event),
                "host": self.host,
                "source": "agentwatch",
                "sourcetype": sourcetype,
                "event": event,
            });
            body.push_str(&wrapped.to_string());
        }
        self.agent
            .post(&self.url)
            .header("Authorization", &format!("Splunk {}", self.token.read()?))
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .map(drop)
            .map_err(|e| format!("POST {}: {e}", self.url))
    }
}

/// Syslog transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// TCP under TLS (RFC 5425).
    Tls,
}

/// RFC 5424 messages: facility authpriv; the severity from the record
/// (a decision that stopped, denied or killed: err; an alert: warning;
/// activity: info); MSGID `finding`, `alert` or `activity`; structured
/// data naming the agent, rule and action; the record as the message.
pub struct Syslog {
    address: String,
    transport: Transport,
    hostname: String,
    roots: Roots,
    tcp: Option<Box<dyn Write + Send>>,
    udp: Option<UdpSocket>,
}

/// authpriv (10): security and authorisation messages.
const FACILITY: u8 = 10;
/// The example private enterprise number (RFC 5612) for our SD-ID.
const SD_ID: &str = "agentwatch@32473";

impl Syslog {
    pub fn new(address: &str, transport: Transport, hostname: &str, roots: Roots) -> Self {
        Self {
            address: address.to_string(),
            transport,
            hostname: hostname.to_string(),
            roots,
            tcp: None,
            udp: None,
        }
    }

    fn message(&self, record: &str) -> String {
        let v: Value = serde_json::from_str(record).unwrap_or(Value::Null);
        // A notice (checkpoint, drift): its type is the MSGID.
        let notice = ["checkpoint", "drift"]
            .into_iter()
            .find(|k| v["type"] == *k || v["unmapped"].get(*k).is_some());
        let (msgid, action, agent, rule) = if let Some(kind) = notice {
            (kind, "", v["agent"].as_str().unwrap_or(""), "")
        } else if v.get("class_uid") == Some(&json!(2004)) {
            (
                "finding",
                v["unmapped"]["action"].as_str().unwrap_or(""),
                v["unmapped"]["agent"].as_str().unwrap_or(""),
                v["finding_info"]["analytic"]["name"].as_str().unwrap_or(""),
            )
        } else if v.get("class_uid").is_some() {
            (
                "activity",
                "",
                v["unmapped"]["agent"].as_str().unwrap_or(""),
                "",
            )
        } else {
            (
                "alert",
                v["action"].as_str().unwrap_or(""),
                v["agent"].as_str().unwrap_or(""),
                v["rule"].as_str().unwrap_or(""),
            )
        };
        let severity: u8 = match (msgid, action) {
            ("activity" | "checkpoint", _) => 6,
            ("drift", _) => 4,
            (_, "alert") => 4,
            _ => 3,
        };
        let pri = FACILITY * 8 + severity;
        // The header carries the record's own time, not the delivery's.
        let ts = record_rfc3339(&v);
        // SD-PARAM values escape '"', '\' and ']' (RFC 5424 6.3.3).
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace(']', "\\]")
        };
        format!(
            "<{pri}>1 {ts} {} agentwatch {} {msgid} [{SD_ID} agent=\"{}\" rule=\"{}\" action=\"{}\"] {record}",
            self.hostname,
            std::process::id(),
            esc(agent),
            esc(rule),
            esc(action)
        )
    }

    /// The stream of a TCP or TLS transport, connected when needed.
    fn connect_tcp(&mut self) -> Result<&mut Box<dyn Write + Send>, String> {
        if self.tcp.is_none() {
            let addr = self
                .address
                .to_socket_addrs()
                .map_err(|e| format!("{}: {e}", self.address))?
                .next()
                .ok_or_else(|| format!("{}: no address", self.address))?;
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .map_err(|e| format!("connect {}: {e}", self.address))?;
            s.set_write_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            self.tcp = Some(match self.transport {
                Transport::Tls => Box::new(self.roots.connect(&self.address, s)?),
                _ => Box::new(s),
            });
        }
        self.tcp.as_mut().ok_or_else(|| "no connection".to_string())
    }
}

impl Receiver for Syslog {
    fn send(&mut self, records: &[String]) -> Result<(), String> {
        let messages: Vec<String> = records.iter().map(|r| self.message(r)).collect();
        match self.transport {
            Transport::Udp => {
                if self.udp.is_none() {
                    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
                    s.connect(&self.address)
                        .map_err(|e| format!("{}: {e}", self.address))?;
                    self.udp = Some(s);
                }
                let s = self.udp.as_ref().ok_or("no socket")?;
                for m in &messages {
                    s.send(m.as_bytes())
                        .map_err(|e| format!("send to {}: {e}", self.address))?;
                }
                Ok(())
            }
            Transport::Tcp | Transport::Tls => {
                let mut framed = Vec::new();
                for m in &messages {
                    framed.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
                }
                let s = self.connect_tcp()?;
                let r = s.write_all(&framed).and_then(|()| s.flush());
                r.map_err(|e| {
                    // Reconnect next time.
                    self.tcp = None;
                    format!("send to {}: {e}", self.address)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_lines_are_rfc5424_with_escaped_structured_data() {
        let s = Syslog::new("127.0.0.1:514", Transport::Udp, "host1", Roots::default());
        let alert = r#"{"type":"alert","agent":"co]der","rule":"file/unknown","action":"pause"}"#;
        let m = s.message(alert);
        // <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD SP MSG
        assert!(m.starts_with("<83>1 "), "{m}");
        let parts: Vec<&str> = m.splitn(7, ' ').collect();
        assert_eq!(parts[2], "host1");
        assert_eq!(parts[3], "agentwatch");
        assert_eq!(parts[5], "alert");
        assert!(parts[6].starts_with(
            r#"[agentwatch@32473 agent="co\]der" rule="file/unknown" action="pause"] {"#
        ));
        let activity = r#"{"class_uid":1001,"unmapped":{"agent":"a"}}"#;
        assert!(s.message(activity).starts_with("<86>1 "));
    }
}
