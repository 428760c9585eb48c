//! The live UI: a page people can read (each agent's timeline in plain
//! words, the requests waiting for a decision with approve and deny
//! buttons), served by `agentwatch daemon` (`[ui] listen`) or `agentwatch
//! run --ui`. Loopback or a unix socket only, behind a token made at each
//! start; the page and its script are built into the binary (`assets/`),
//! nothing is fetched from elsewhere.
//!
//! The token travels in the URL's fragment (`#token=`), which browsers
//! never send to a server or a proxy log; the page's script sends it as a
//! bearer header. A cross-site page cannot set that header without a CORS
//! preflight, which is never granted, and the Host header must name the
//! loopback address, so DNS rebinding reaches nothing.
mod api;
mod http;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    os::unix::{
        fs::PermissionsExt,
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use thiserror::Error;
use tracing::{info, warn};

use crate::control::Handler;
use http::Response;

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/ui.js");
const STYLE: &str = include_str!("assets/ui.css");

#[derive(Debug, Error)]
pub enum UiError {
    #[error("ui listen {0:?}: give 127.0.0.1:PORT, [::1]:PORT or unix:/absolute/path.sock (the UI serves only this host; put an authenticating TLS proxy in front to reach it from elsewhere)")]
    Listen(String),
    #[error("cannot serve the UI on {at}: {source}")]
    Bind { at: String, source: std::io::Error },
    #[error("cannot make the UI's token: the system's random source failed")]
    Random,
    #[error("cannot write the UI's address to {path}: {source}")]
    UrlFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the UI listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for Listen {
    type Err = UiError;

    fn from_str(s: &str) -> Result<Self, UiError> {
        if let Some(p) = s.strip_prefix("unix:") {
            let p = PathBuf::from(p);
            return if p.is_absolute() {
                Ok(Listen::Unix(p))
            } else {
                Err(UiError::Listen(s.into()))
            };
        }
        match s.parse::<SocketAddr>() {
            Ok(a) if a.ip().is_loopback() => Ok(Listen::Tcp(a)),
            _ => Err(UiError::Listen(s.into())),
        }
    }
}

/// What the UI serves: the control handler that answers for the agents,
/// and the audit log its timeline reads.
pub struct Source {
    pub handler: Arc<dyn Handler>,
    pub audit: Option<PathBuf>,
    /// Each agent's drift log (the daemon's), for its trend.
    pub drift: Vec<(String, PathBuf)>,
}

/// A serving UI. Dropping it removes its unix socket and its URL file
/// (the thread ends with the process).
pub struct UiServer {
    pub url: String,
    socket: Option<PathBuf>,
    url_file: Option<PathBuf>,
}

impl Drop for UiServer {
    fn drop(&mut self) {
        for p in [&self.socket, &self.url_file].into_iter().flatten() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A fresh token: 32 random bytes, hex.
fn token() -> Result<String, UiError> {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| UiError::Random)?;
    Ok(crate::hex::encode(&b))
}

/// Serves the UI at `listen` on a thread; writes its URL (with the
/// token) to `url_file`, mode 0600, when given.
pub fn serve(listen: &Listen, src: Source, url_file: Option<&Path>) -> Result<UiServer, UiError> {
    let token = token()?;
    let bind = |at: &dyn std::fmt::Display| {
        let at = at.to_string();
        move |source| UiError::Bind { at, source }
    };
    let tok = token.clone();
    let ui = Arc::new(Ui { src, token });
    let (url, socket) = match listen {
        Listen::Tcp(addr) => {
            let l = TcpListener::bind(addr).map_err(bind(addr))?;
            let addr = l.local_addr().map_err(bind(addr))?;
            spawn(move || {
                for conn in l.incoming().flatten() {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                    ui.answer(conn, None, Some(addr.port()));
                }
            })
            .map_err(bind(&addr))?;
            (format!("http://{addr}/#token={tok}"), None)
        }
        Listen::Unix(path) => {
            let at = path.display();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(bind(&at))?;
            }
            let _ = std::fs::remove_file(path);
            let l = UnixListener::bind(path).map_err(bind(&at))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(bind(&at))?;
            spawn(move || {
                for conn in l.incoming().flatten() {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                    let by = peer_name(&conn);
                    ui.answer(conn, Some(by), None);
                }
            })
            .map_err(bind(&at))?;
            (
                format!("unix:{} http://localhost/#token={tok}", path.display()),
                Some(path.clone()),
            )
        }
    };
    if let Some(f) = url_file {
        write_private(f, &format!("{url}\n")).map_err(|source| UiError::UrlFile {
            path: f.to_path_buf(),
            source,
        })?;
    }
    info!(listen = ?listen, "serving the UI (agentwatch ui prints its address)");
    Ok(UiServer {
        url,
        socket,
        url_file: url_file.map(Path::to_path_buf),
    })
}

fn spawn(f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("aw-ui".into())
        .spawn(f)
        .map(|_| ())
}

/// Writes `text` to `path`, readable by its owner only from the start.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// The user a unix-socket peer runs as, for the audit log.
fn peer_name(conn: &UnixStream) -> String {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    match getsockopt(conn, PeerCredentials) {
        Ok(c) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(c.uid()))
            .ok()
            .flatten()
            .map(|u| format!("{} (ui)", u.name))
            .unwrap_or_else(|| format!("uid {} (ui)", c.uid())),
        Err(_) => "ui".into(),
    }
}

struct Ui {
    src: Source,
    token: String,
}

impl Ui {
    /// One connection: one request, one answer. `by`: who answers the
    /// requests approved from it; `port`: the TCP port the Host header
    /// must name.
    fn answer<C: Read + Write>(&self, mut conn: C, by: Option<String>, port: Option<u16>) {
        let r = match http::read(&mut conn) {
            Ok(Some(req)) => self.route(&req, by.as_deref().unwrap_or("ui"), port),
            Ok(None) => Response::text("400 Bad Request", "malformed request"),
            Err(_) => return,
        };
        if let Err(e) = http::write(&mut conn, &r) {
            warn!(error = %e, "ui: answering failed");
        }
    }

    fn route(&self, req: &http::Request, by: &str, port: Option<u16>) -> Response {
        if let Some(port) = port {
            if !loopback_host(req.header("host"), port) {
                return Response::text(
                    "421 Misdirected Request",
                    "open the UI at the address `agentwatch ui` prints",
                );
            }
        }
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/") => Response::new("200 OK", "text/html; charset=utf-8", PAGE),
            ("GET", "/ui.js") => Response::new("200 OK", "text/javascript; charset=utf-8", SCRIPT),
            ("GET", "/ui.css") => Response::new("200 OK", "text/css; charset=utf-8", STYLE),
            (_, p) if p.starts_with("/api/") && !self.authorized(req) => Response::text(
                "401 Unauthorized",
                "the UI's token is missing or stale: open the address `agentwatch ui` prints",
            ),
            ("GET", "/api/state") => api::state(&self.src),
            ("POST", "/api/approve") => api::answer(self.src.handler.as_ref(), req, true, by),
            ("POST", "/api/deny") => api::answer(self.src.handler.as_ref(), req, false, by),
            _ => Response::text("404 Not Found", "no such page"),
        }
    }

    /// The bearer token, compared in constant time.
    fn authorized(&self, req: &http::Request) -> bool {
        let given = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("");
        given.len() == self.token.len()
            && given
                .bytes()
                .zip(self.token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// Whether a Host header names this server on the loopback address.
fn loopback_host(host: Option<&str>, port: u16) -> bool {
    let Some(h) = host else {
        return false;
    };
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|name| h == format!("{name}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{Envelope, Reply};

    struct Nobody;
    impl Handler for Nobody {
        fn handle(&self, _: Envelope, _: &str) -> Reply {
            Reply::Pending(Vec::new())
        }
    }

    fn ui() -> Ui {
        Ui {
            src: Source {
                handler: Arc::new(Nobody),
                audit: None,
                drift: Vec::new(),
            },
            token: "abc".into(),
        }
    }

    fn get(path: &str, host: &str, auth: Option<&str>) -> http::Request {
        let mut headers = vec![("host".to_string(), host.to_string())];
        if let Some(a) = auth {
            headers.push(("authorization".into(), format!("Bearer {a}")));
        }
        http::Request {
            method: "GET".into(),
            path: path.into(),
            headers,
            body: Vec::new(),
        }
    }

    #[test]
    fn listen_is_loopback_or_a_unix_socket() {
        assert_eq!(
            "127.0.0.1:7878".parse::<Listen>().unwrap(),
            Listen::Tcp("127.0.0.1:7878".parse().unwrap())
        );
        assert!("[::1]:0".parse::<Listen>().is_ok());
        assert_eq!(
            "unix:/run/agentwatch/ui.sock".parse::<Listen>().unwrap(),
            Listen::Unix("/run/agentwatch/ui.sock".into())
        );
        for bad in ["0.0.0.0:7878", "10.0.0.1:80", "unix:ui.sock", "localhost"] {
            let e = bad.parse::<Listen>().unwrap_err().to_string();
            assert!(e.contains("127.0.0.1:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_api_needs_the_token_and_the_loopback_host() {
        let u = ui();
        assert_eq!(
            u.route(&get("/", "127.0.0.1:9", None), "ui", Some(9))
                .status,
            "200 OK"
        );
        assert_eq!(
            u.route(&get("/api/state", "127.0.0.1:9", None), "ui", Some(9))
                .status,
            "401 Unauthorized"
        );
        assert_eq!(
            u.route(
                &get("/api/state", "127.0.0.1:9", Some("abd")),
                "ui",
                Some(9)
            )
            .status,
            "401 Unauthorized"
        );
        assert_eq!(
            u.route(
                &get("/api/state", "localhost:9", Some("abc")),
                "ui",
                Some(9)
            )
            .status,
            "200 OK"
        );
        // A rebinding attacker's name, with the right token even.
        assert_eq!(
            u.route(
                &get("/api/state", "evil.example:9", Some("abc")),
                "ui",
                Some(9)
            )
            .status,
            "421 Misdirected Request"
        );
        assert_eq!(
            u.route(&get("/nope", "127.0.0.1:9", None), "ui", Some(9))
                .status,
            "404 Not Found"
        );
    }

    #[test]
    fn tokens_are_fresh_and_long() {
        let (a, b) = (token().unwrap(), token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
