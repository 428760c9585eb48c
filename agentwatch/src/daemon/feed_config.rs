//! The `[[feed]]` tables and `[metrics]` of the daemon's configuration:
//! where decisions (and, if asked, every event) go, in which format, and
//! where each feed spools while its receiver is away.
use std::{net::ToSocketAddrs, path::Path};

use serde::Deserialize;
use toml::Spanned;

use super::config::Problems;
use crate::feeds::{deliver::Transport, tls::Roots, FeedConfig, Format, Kind, Secret};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FeedDoc {
    name: Spanned<String>,
    kind: Spanned<KindDoc>,
    url: Option<Spanned<String>>,
    token: Option<String>,
    /// The token in a file of its own (a mounted Secret), read per batch.
    token_file: Option<std::path::PathBuf>,
    /// Extra HTTP headers of a webhook.
    headers: Option<std::collections::BTreeMap<String, String>>,
    address: Option<Spanned<String>>,
    #[serde(default)]
    transport: TransportDoc,
    /// The CA bundle (PEM) HTTPS and syslog TLS verify the receiver with.
    ca_file: Option<Spanned<std::path::PathBuf>>,
    #[serde(default = "ocsf")]
    format: Format,
    #[serde(default)]
    events: EventsDoc,
    spool_dir: Option<std::path::PathBuf>,
    #[serde(default = "spool_max_mb")]
    spool_max_mb: u64,
}

fn ocsf() -> Format {
    Format::Ocsf
}

fn spool_max_mb() -> u64 {
    1024
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum KindDoc {
    Webhook,
    SplunkHec,
    Syslog,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum TransportDoc {
    #[default]
    Udp,
    Tcp,
    Tls,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum EventsDoc {
    #[default]
    Decisions,
    All,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsDoc {
    listen: Spanned<String>,
}

/// Validates the feeds; spools default to `state_dir`/spool/NAME.
pub(super) fn feeds(
    p: &mut Problems,
    docs: &[Spanned<FeedDoc>],
    state_dir: &Path,
    abs: &dyn Fn(&Path) -> std::path::PathBuf,
) -> Vec<FeedConfig> {
    let mut out: Vec<FeedConfig> = Vec::new();
    for d in docs {
        let f = d.get_ref();
        let name = f.name.get_ref().clone();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            p.at(
                Some(f.name.span()),
                format!("feed name {name:?}: use letters, digits, '-' and '_' (it names the spool directory)"),
            );
        }
        if out.iter().any(|o| o.name == name) {
            p.at(
                Some(f.name.span()),
                format!("feed {name:?} is defined twice"),
            );
        }
        let kind = feed_kind(p, d, &name, abs);
        let all_events = f.events == EventsDoc::All;
        if all_events && f.format == Format::Alerts {
            p.at(Some(d.span()), format!("feed {name}: events = \"all\" needs format = \"ocsf\" (alerts are decisions only)"));
        }
        let roots = roots(p, f, &name, abs);
        if let (Some(kind), Some(roots)) = (kind, roots) {
            out.push(FeedConfig {
                roots,
                spool_dir: f
                    .spool_dir
                    .as_deref()
                    .map(abs)
                    .unwrap_or_else(|| state_dir.join("spool").join(&name)),
                name,
                kind,
                format: f.format,
                all_events,
                spool_max_bytes: f.spool_max_mb.saturating_mul(1 << 20),
            });
        }
    }
    out
}

/// The feed's trust anchors: its `ca_file`, loaded now (a bundle that
/// does not load stops the configuration, not a delivery at 3 a.m.), only
/// where there is TLS to verify. None when the bundle is refused.
fn roots(
    p: &mut Problems,
    f: &FeedDoc,
    name: &str,
    abs: &dyn Fn(&Path) -> std::path::PathBuf,
) -> Option<Roots> {
    let Some(ca) = &f.ca_file else {
        return Some(Roots::default());
    };
    let tls = match f.kind.get_ref() {
        KindDoc::Syslog => f.transport == TransportDoc::Tls,
        _ => f
            .url
            .as_ref()
            .is_some_and(|u| u.get_ref().starts_with("https://")),
    };
    if !tls {
        p.at(
            Some(ca.span()),
            format!("feed {name}: ca_file verifies TLS receivers: use an https:// url, or transport = \"tls\" for syslog"),
        );
        return None;
    }
    match Roots::load(&abs(ca.get_ref())) {
        Ok(r) => Some(r),
        Err(e) => {
            p.at(Some(ca.span()), format!("feed {name}: {e}"));
            None
        }
    }
}

fn kind_name(k: KindDoc) -> &'static str {
    match k {
        KindDoc::Webhook => "webhook",
        KindDoc::SplunkHec => "splunk_hec",
        KindDoc::Syslog => "syslog",
    }
}

/// `[metrics] listen`, checked to be HOST:PORT.
pub(super) fn metrics(p: &mut Problems, doc: Option<&MetricsDoc>) -> Option<String> {
    let m = doc?;
    if m.listen.get_ref().to_socket_addrs().is_err() {
        p.at(
            Some(m.listen.span()),
            format!(
                "metrics listen {:?}: give HOST:PORT, e.g. 127.0.0.1:9464",
                m.listen.get_ref()
            ),
        );
        return None;
    }
    Some(m.listen.get_ref().clone())
}

/// Where a feed delivers: its receiver's kind with what that kind needs
/// (a URL, a token, a syslog address). None, with the problem noted,
/// when something is missing or malformed.
fn feed_kind(
    p: &mut Problems,
    d: &Spanned<FeedDoc>,
    name: &str,
    abs: &dyn Fn(&Path) -> std::path::PathBuf,
) -> Option<Kind> {
    let f = d.get_ref();
    let token = credentials(p, d, name, abs);
    let url = |p: &mut Problems| match &f.url {
        Some(u) if u.get_ref().starts_with("http://") || u.get_ref().starts_with("https://") => {
            Some(u.get_ref().clone())
        }
        Some(u) => {
            p.at(
                Some(u.span()),
                format!("feed {name}: url must start with http:// or https://"),
            );
            None
        }
        None => {
            p.at(
                Some(d.span()),
                format!(
                    "feed {name}: a {} feed needs url",
                    kind_name(*f.kind.get_ref())
                ),
            );
            None
        }
    };
    match f.kind.get_ref() {
        KindDoc::Webhook => url(p).map(|url| Kind::Webhook {
            url,
            headers: f
                .headers
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            token,
        }),
        KindDoc::SplunkHec => {
            let u = url(p);
            if token.is_none() {
                p.at(
                    Some(d.span()),
                    format!("feed {name}: splunk_hec needs token or token_file (the HEC token)"),
                );
            }
            u.zip(token)
                .map(|(url, token)| Kind::SplunkHec { url, token })
        }
        KindDoc::Syslog => match &f.address {
            Some(a) if a.get_ref().to_socket_addrs().is_ok() => Some(Kind::Syslog {
                address: a.get_ref().clone(),
                transport: match f.transport {
                    TransportDoc::Udp => Transport::Udp,
                    TransportDoc::Tcp => Transport::Tcp,
                    TransportDoc::Tls => Transport::Tls,
                },
            }),
            Some(a) => {
                p.at(
                    Some(a.span()),
                    format!(
                        "feed {name}: address {:?} is not HOST:PORT that resolves",
                        a.get_ref()
                    ),
                );
                None
            }
            None => {
                p.at(
                    Some(d.span()),
                    format!("feed {name}: a syslog feed needs address (HOST:PORT)"),
                );
                None
            }
        },
    }
}

/// A feed's token (`token` or `token_file`) and headers, checked against
/// its kind.
fn credentials(
    p: &mut Problems,
    d: &Spanned<FeedDoc>,
    name: &str,
    abs: &dyn Fn(&Path) -> std::path::PathBuf,
) -> Option<Secret> {
    let f = d.get_ref();
    let token = match (&f.token, &f.token_file) {
        (Some(_), Some(_)) => {
            p.at(
                Some(d.span()),
                format!("feed {name}: give token or token_file, not both"),
            );
            None
        }
        (Some(t), None) if !t.is_empty() => Some(Secret::Inline(t.clone())),
        (_, Some(file)) => Some(Secret::File(abs(file))),
        _ => None,
    };
    let http = matches!(f.kind.get_ref(), KindDoc::Webhook | KindDoc::SplunkHec);
    if !http && (token.is_some() || f.headers.is_some()) {
        p.at(
            Some(d.span()),
            format!(
                "feed {name}: token, token_file and headers are for webhook and splunk_hec feeds"
            ),
        );
    }
    if f.headers.is_some() && *f.kind.get_ref() != KindDoc::Webhook {
        p.at(
            Some(d.span()),
            format!(
                "feed {name}: headers are for webhook feeds (splunk_hec sends its token itself)"
            ),
        );
    }
    token
}
