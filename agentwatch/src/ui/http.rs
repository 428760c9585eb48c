//! Just enough HTTP/1.1 for the UI: one bounded request per connection
//! (request line, headers, a `Content-Length` body), one response, close.
//! The peer is not trusted: sizes are capped and reads time out.
use std::io::{Read, Write};

/// Largest request head and body read.
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 16 * 1024;

#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    /// The path without its query.
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request; None for a malformed or oversized one.
pub fn read(conn: &mut impl Read) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if i > MAX_HEAD {
                return Ok(None);
            }
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target)) = (first.next(), first.next()) else {
        return Ok(None);
    };
    let mut req = Request {
        method: method.to_string(),
        path: target.split('?').next().unwrap_or("").to_string(),
        ..Request::default()
    };
    for l in lines {
        if let Some((n, v)) = l.split_once(':') {
            req.headers
                .push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = match req.header("content-length").map(str::parse) {
        None => 0,
        Some(Ok(n)) if n <= MAX_BODY => n,
        Some(_) => return Ok(None),
    };
    let mut body = buf.split_off(head_end + 4);
    while body.len() < len {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    req.body = body;
    Ok(Some(req))
}

/// A response: status line, type, body.
pub struct Response {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: &'static str, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
        }
    }

    pub fn json(status: &'static str, v: &serde_json::Value) -> Self {
        Self::new(status, "application/json", v.to_string())
    }

    pub fn text(status: &'static str, s: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", format!("{s}\n"))
    }
}

/// Writes `r` with the headers every answer carries: nothing cached,
/// nothing framed or sniffed, scripts and styles only from this server.
pub fn write(conn: &mut impl Write, r: &Response) -> std::io::Result<()> {
    write!(
        conn,
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nContent-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'\r\nConnection: close\r\n\r\n",
        r.status,
        r.content_type,
        r.body.len()
    )?;
    conn.write_all(&r.body)?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_back_with_its_body_and_without_its_query() {
        let raw = b"POST /api/approve?x=1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\nContent-Length: 11\r\nAuthorization: Bearer t\r\n\r\n{\"id\":\"a\"}\n";
        let r = read(&mut &raw[..]).unwrap().unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/api/approve")
        );
        assert_eq!(r.header("authorization"), Some("Bearer t"));
        assert_eq!(r.body, b"{\"id\":\"a\"}\n");
    }

    #[test]
    fn oversized_and_truncated_requests_are_refused() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD + 10));
        assert!(read(&mut big.as_bytes()).unwrap().is_none());
        let body = b"POST / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n";
        assert!(read(&mut &body[..]).unwrap().is_none());
        let short = b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nab";
        assert!(read(&mut &short[..]).unwrap().is_none());
        assert!(read(&mut &b"GET / HTTP/1.1\r\n"[..]).unwrap().is_none());
    }
}
