//! TLS for the tests: certificates made on the spot with `rcgen` (a CA,
//! server and client certificates it signs, an expired server certificate
//! and an unrelated CA), written as PEM files, and a blocking TLS client
//! that speaks raw RESP bytes like [`super::RawConn`].

use super::{escape, scan_frame};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

/// Certificates and keys in a temporary directory. Server certificates name
/// `localhost` and the IP address 127.0.0.1.
pub struct TlsFiles {
    dir: TempDir,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().expect("CA key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let pem = p.self_signed(&key).expect("CA cert").pem();
    (p, key, pem)
}

fn leaf(
    issuer: &Issuer<'_, &KeyPair>,
    name: &str,
    usage: &[ExtendedKeyUsagePurpose],
    expired: bool,
) -> (String, String) {
    let key = KeyPair::generate().expect("leaf key");
    let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("leaf params");
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = usage.to_vec();
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = p.signed_by(&key, issuer).expect("sign leaf");
    (cert.pem(), key.serialize_pem())
}

impl TlsFiles {
    pub fn new() -> TlsFiles {
        let dir = tempfile::Builder::new()
            .prefix("respite-tls-")
            .tempdir()
            .expect("tempdir");
        let (ca_params, ca_key, ca_pem) = ca("respite test CA");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let (_, _, other_pem) = ca("some other CA");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write PEM");
        };
        write("ca.pem", &ca_pem);
        write("other-ca.pem", &other_pem);
        let (c, k) = leaf(
            &issuer,
            "server",
            // Redis and sentinels also present it as clients (replication,
            // sentinel connections) to peers that require certificates.
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            false,
        );
        write("server.pem", &c);
        write("server.key", &k);
        let (c, k) = leaf(
            &issuer,
            "client",
            &[ExtendedKeyUsagePurpose::ClientAuth],
            false,
        );
        write("client.pem", &c);
        write("client.key", &k);
        let (c, k) = leaf(
            &issuer,
            "expired",
            // Expired both as Redis's certificate and as respite's own.
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            true,
        );
        write("expired.pem", &c);
        write("expired.key", &k);
        TlsFiles { dir }
    }

    /// `ca.pem`, `other-ca.pem`, `server.pem`/`.key`, `client.pem`/`.key`,
    /// `expired.pem`/`.key`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The path as a string (for command lines and TOML).
    pub fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// A client configuration trusting `ca.pem`, with the client
    /// certificate when `with_cert`.
    pub fn client_config(&self, with_cert: bool) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(&self.path("ca.pem")) {
            roots.add(c).expect("add CA");
        }
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        Arc::new(if with_cert {
            let key = PrivateKeyDer::from_pem_file(self.path("client.key")).expect("client key");
            b.with_client_auth_cert(certs(&self.path("client.pem")), key)
                .expect("client cert")
        } else {
            b.with_no_client_auth()
        })
    }
}

impl Default for TlsFiles {
    fn default() -> Self {
        Self::new()
    }
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .expect("read PEM")
        .collect::<Result<Vec<_>, _>>()
        .expect("parse PEM")
}

/// `redis-server` arguments for a TLS port beside the plaintext one, with
/// `files`' certificates and client certificates required.
pub fn redis_args(files: &TlsFiles, tls_port: u16) -> Vec<String> {
    [
        "--tls-port".to_string(),
        tls_port.to_string(),
        "--tls-cert-file".to_string(),
        files.p("server.pem"),
        "--tls-key-file".to_string(),
        files.p("server.key"),
        "--tls-ca-cert-file".to_string(),
        files.p("ca.pem"),
        "--tls-auth-clients".to_string(),
        "yes".to_string(),
    ]
    .to_vec()
}

/// A blocking TLS connection that speaks raw RESP bytes.
pub struct TlsConn {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsConn {
    /// Connects to `127.0.0.1:port` and completes the handshake (verifying
    /// the server as 127.0.0.1).
    pub fn connect(port: u16, config: Arc<rustls::ClientConfig>) -> io::Result<TlsConn> {
        Self::connect_within(port, config, Duration::from_secs(10))
    }

    pub fn connect_within(
        port: u16,
        config: Arc<rustls::ClientConfig>,
        timeout: Duration,
    ) -> io::Result<TlsConn> {
        let addr = format!("127.0.0.1:{port}").parse().expect("addr");
        let tcp = TcpStream::connect_timeout(&addr, timeout)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(TlsConn {
            tls,
            buf: Vec::new(),
        })
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.tls.write_all(bytes)?;
        self.tls.flush()
    }

    /// One complete reply frame.
    pub fn try_read_reply(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match scan_frame(&self.buf, 0) {
                Ok(Some(end)) => return Ok(self.buf.drain(..end).collect()),
                Ok(None) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{e}: {}", escape(&self.buf)),
                    ))
                }
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.tls.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed; partial reply: {}", escape(&self.buf)),
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    #[track_caller]
    pub fn cmd_str(&mut self, args: &[&str]) -> Vec<u8> {
        self.try_send(&super::encode_str(args))
            .and_then(|_| self.try_read_reply())
            .unwrap_or_else(|e| panic!("{args:?} over TLS: {e}"))
    }
}

/// PING over TLS with the client certificate: the first reply frame, or
/// `None` if the port does not accept, handshake or answer in time.
pub fn ping(port: u16, files: &TlsFiles, timeout: Duration) -> Option<Vec<u8>> {
    let mut c = TlsConn::connect_within(port, files.client_config(true), timeout).ok()?;
    c.try_send(b"*1\r\n$4\r\nPING\r\n").ok()?;
    c.try_read_reply().ok()
}
