//! Prometheus metrics: a minimal HTTP listener answering `GET /metrics`
//! with the text exposition format, rendered on each scrape. Anything
//! else gets 404. One connection at a time: scrapes are rare and small.
use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::Arc,
    time::Duration,
};

use tracing::warn;

/// Renders the exposition text.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `render` on `listen` (host:port) on a thread.
pub fn serve(listen: &str, render: Render) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("aw-metrics".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                if let Err(e) = answer(conn, &render) {
                    warn!(error = %e, "metrics scrape failed");
                }
            }
        })?;
    Ok(addr)
}

fn answer(mut conn: TcpStream, render: &Render) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) =
        if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                render(),
            )
        } else {
            ("404 Not Found", "text/plain", "GET /metrics\n".to_string())
        };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Builds exposition text: each metric's HELP and TYPE once, then its
/// samples.
#[derive(Default)]
pub struct Text {
    out: String,
}

impl Text {
    pub fn metric(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample; `labels` as (name, value) pairs, values escaped.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) -> &mut Self {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| {
                    let v = v
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    format!("{k}=\"{v}\"")
                })
                .collect();
            let _ = writeln!(self.out, "{name}{{{}}} {value}", l.join(","));
        }
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_text_escapes_labels_and_the_listener_answers_only_metrics() {
        let mut t = Text::default();
        t.metric("aw_x_total", "counter", "things")
            .sample("aw_x_total", &[("agent", "a\"b")], 3)
            .sample("aw_x_total", &[], 1);
        let text = t.finish();
        assert_eq!(
            text,
            "# HELP aw_x_total things\n# TYPE aw_x_total counter\naw_x_total{agent=\"a\\\"b\"} 3\naw_x_total 1\n"
        );
        let addr = serve("127.0.0.1:0", Arc::new(move || text.clone())).unwrap();
        let get = |path: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut r = String::new();
            s.read_to_string(&mut r).unwrap();
            r
        };
        let ok = get("/metrics");
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        assert!(ok.ends_with("aw_x_total 1\n"), "{ok}");
        assert!(get("/").starts_with("HTTP/1.1 404"));
    }
}
