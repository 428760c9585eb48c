//! TLS to the receivers: HTTPS for webhooks and Splunk HEC (through
//! ureq), and syslog over TLS (RFC 5425, through rustls). The server is
//! verified against the feed's `ca_file` (a PEM bundle: a private CA) or,
//! without one, against Mozilla's roots (webpki-roots). Verification is
//! never turned off.
use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rustls::{pki_types::ServerName, ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::{pem::PemObject, CertificateDer};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("ca_file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ca_file {path}: no PEM certificate (`-----BEGIN CERTIFICATE-----`) in it; give the CA that signed the receiver's certificate")]
    NoCertificate { path: PathBuf },
    #[error("ca_file {path}: a certificate rustls cannot use: {why}")]
    Unusable { path: PathBuf, why: String },
}

/// The trust anchors of a feed: its CA bundle, or none for the defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Roots {
    certs: Vec<CertificateDer<'static>>,
}

impl Roots {
    /// The certificates of the PEM bundle at `path` (at least one).
    pub fn load(path: &Path) -> Result<Self, TlsError> {
        let pem = std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .filter_map(Result::ok)
            .collect();
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                path: path.to_path_buf(),
            });
        }
        // What rustls would refuse later is refused now, with the file.
        let mut store = RootCertStore::empty();
        for c in &certs {
            store.add(c.clone()).map_err(|e| TlsError::Unusable {
                path: path.to_path_buf(),
                why: e.to_string(),
            })?;
        }
        Ok(Self { certs })
    }

    /// An HTTP agent that verifies servers against these roots.
    pub fn http_agent(&self) -> ureq::Agent {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let mut tls = TlsConfig::builder();
        if !self.certs.is_empty() {
            let certs: Vec<Certificate<'static>> = self
                .certs
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .tls_config(tls.build())
            .build()
            .into()
    }

    fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        let mut store = RootCertStore::empty();
        if self.certs.is_empty() {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        } else {
            for c in &self.certs {
                store.add(c.clone()).map_err(|e| e.to_string())?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Arc::new(cfg))
    }

    /// A TLS stream to `address` (HOST:PORT) over `tcp`, the server
    /// verified as HOST; the handshake is done before it returns.
    pub fn connect(
        &self,
        address: &str,
        tcp: TcpStream,
    ) -> Result<StreamOwned<ClientConnection, TcpStream>, String> {
        let host = host_of(address);
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("{address}: {host:?} is not a server name: {e}"))?;
        let conn = ClientConnection::new(self.client_config()?, name)
            .map_err(|e| format!("TLS to {address}: {e}"))?;
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn
                .complete_io(&mut s.sock)
                .map_err(|e| format!("TLS handshake with {address}: {e}"))?;
        }
        Ok(s)
    }
}

/// The host of HOST:PORT (`[::1]:6514` gives `::1`).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("siem.example.com:6514"), "siem.example.com");
        assert_eq!(host_of("127.0.0.1:6514"), "127.0.0.1");
        assert_eq!(host_of("[::1]:6514"), "::1");
    }

    #[test]
    fn a_bundle_without_a_certificate_is_refused() {
        let p = std::env::temp_dir().join(format!("aw-ca-{}.pem", std::process::id()));
        std::fs::write(&p, "not a certificate\n").unwrap();
        let e = Roots::load(&p).unwrap_err();
        let _ = std::fs::remove_file(&p);
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
        assert!(matches!(
            Roots::load(Path::new("/nonexistent/ca.pem")),
            Err(TlsError::Read { .. })
        ));
    }
}
