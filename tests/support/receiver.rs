//! Receivers the SOC feed tests deliver to, on loopback: a minimal HTTP
//! server that keeps every request (a webhook, a Splunk HEC), and rsyslogd
//! with a configuration of the test's own. Both stop on drop.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

/// A free loopback port (bound, then released for the receiver to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct HttpReceiver {
    pub port: u16,
    got: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the receiver answers: (status line, body).
pub type Respond = Arc<dyn Fn(&Request) -> (&'static str, String) + Send + Sync>;

impl HttpReceiver {
    /// Listens on `port` and answers 200 to every POST.
    pub fn start(port: u16) -> Self {
        Self::start_with(port, Arc::new(|_| ("200 OK", "ok".to_string())))
    }

    /// `start`, over TLS with this server configuration (HTTPS).
    pub fn start_tls(port: u16, tls: Arc<rustls::ServerConfig>) -> Self {
        Self::serve(port, Arc::new(|_| ("200 OK", "ok".to_string())), Some(tls))
    }

    /// `start_with`, over TLS (a stand-in HTTPS API).
    pub fn start_tls_with(port: u16, tls: Arc<rustls::ServerConfig>, respond: Respond) -> Self {
        Self::serve(port, respond, Some(tls))
    }

    /// Listens on `port`, keeps every request and answers with `respond`
    /// (a stand-in API server).
    pub fn start_with(port: u16, respond: Respond) -> Self {
        Self::serve(port, respond, None)
    }

    fn serve(port: u16, respond: Respond, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind receiver");
        listener.set_nonblocking(true).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                        let got =
                            match &tls {
                                None => read_request(conn, &respond),
                                // A client that refuses the certificate ends
                                // the handshake: no request.
                                Some(cfg) => rustls::ServerConnection::new(cfg.clone())
                                    .ok()
                                    .and_then(|c| {
                                        read_request(rustls::StreamOwned::new(c, conn), &respond)
                                    }),
                            };
                        if let Some(r) = got {
                            g.lock().unwrap().push(r);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            port,
            got,
            stop,
            thread: Some(thread),
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.got.lock().unwrap().clone()
    }

    /// Every JSON line POSTed to `path`, in arrival order.
    pub fn lines(&self, path: &str) -> Vec<serde_json::Value> {
        self.requests()
            .iter()
            .filter(|r| r.path == path)
            .flat_map(|r| {
                r.body
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| serde_json::from_str(l).expect("a JSON line"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_request(conn: impl Read + Write, respond: &Respond) -> Option<Request> {
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    let req = Request {
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let (status, text) = respond(&req);
    let out = r.get_mut();
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = out.flush();
    Some(req)
}

/// rsyslogd listening on loopback UDP and TCP ports (and, given a
/// certificate, TLS: RFC 5425 through its openssl driver), writing what it
/// parsed of each message (RFC 5424 fields, `|`-separated) to a file.
pub struct Rsyslog {
    child: Child,
    pub udp: u16,
    pub tcp: u16,
    /// The TLS port, when started with a certificate.
    pub tls: Option<u16>,
    pub out: PathBuf,
}

impl Rsyslog {
    /// None (after printing why) when rsyslogd is not installed.
    pub fn start(dir: &Path) -> Option<Self> {
        Self::start_with_tls(dir, None)
    }

    /// `start`, with a TLS input presenting `pki`'s certificate.
    pub fn start_with_tls(dir: &Path, pki: Option<&super::pki::Pki>) -> Option<Self> {
        if Command::new("rsyslogd").arg("-v").output().is_err() {
            eprintln!("SKIP: rsyslogd is not installed (scripts/setup.sh installs rsyslog)");
            return None;
        }
        let (udp, tcp) = (free_port(), free_port());
        let tls = pki.map(|_| free_port());
        let out = dir.join("received.log");
        let conf = dir.join("rsyslog.conf");
        let (tls_global, tls_input) = match (pki, tls) {
            (Some(k), Some(port)) => (
                format!(
                    r#" DefaultNetstreamDriverCAFile="{}" DefaultNetstreamDriverCertFile="{}" DefaultNetstreamDriverKeyFile="{}""#,
                    k.ca.display(),
                    k.cert.display(),
                    k.key.display()
                ),
                format!(
                    r#"input(type="imtcp" address="127.0.0.1" port="{port}" StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.AuthMode="anon" ruleset="tls")
ruleset(name="tls") {{ action(type="omfile" file="{}" template="fields") }}"#,
                    dir.join("received-tls.log").display()
                ),
            ),
            _ => (String::new(), String::new()),
        };
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{d}"{tls_global})
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
template(name="fields" type="string" string="%protocol-version%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
*.* action(type="omfile" file="{o}" template="fields")
{tls_input}
"#,
                d = dir.display(),
                o = out.display()
            ),
        )
        .ok()?;
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // Listening once the TCP port takes connections.
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", tcp)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self {
            child,
            udp,
            tcp,
            tls,
            out,
        })
    }

    pub fn received(&self) -> Vec<String> {
        lines_of(&self.out)
    }

    /// What arrived on the TLS input.
    pub fn received_tls(&self) -> Vec<String> {
        lines_of(&self.out.with_file_name("received-tls.log"))
    }
}

fn lines_of(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python that has the OCSF validator, or None (after printing why).
pub fn ocsf_python() -> Option<PathBuf> {
    let py = std::env::var_os("AGENTWATCH_PYTOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/agentwatch/pytools"))
        .join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import ocsf_json_schema, jsonschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIP: no OCSF validator at {} (scripts/setup.sh installs ocsf-json-schema there)",
            py.display()
        );
        return None;
    }
    Some(py)
}
