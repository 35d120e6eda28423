//! TLS on both sides, with rustls (no OpenSSL).
//!
//! Certificates and keys are loaded from PEM files when the configuration is
//! validated (so `--check` reports a bad file), into a rustls `ServerConfig`
//! (client side) or `ClientConfig` (upstream side) held in a [`Swap`]: every
//! new handshake takes the one current at that moment, so certificates can be
//! replaced while the proxy runs without touching established connections
//! (the reload of issue 21 swaps them; see docs/DESIGN.md).
//!
//! The handshake is tokio-rustls's. After it, [`TlsIo`] drives the rustls
//! connection itself over the non-blocking socket, with the same
//! "read what is there, write what fits" calls the plaintext path uses
//! (`net::read_buf`/`net::write_buf`), so sessions and upstream connections
//! keep one loop for both.

use bytes::{Buf, BytesMut};
use parking_lot::{Mutex, RwLock};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpStream;

/// Whether and how the TLS listener asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// No client certificate is asked for.
    None,
    /// A certificate is asked for; one that is sent must verify, none is fine.
    Optional,
    /// Clients without a certificate that verifies are refused.
    Required,
}

/// Lowest TLS version accepted or offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum MinVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// A value that is read whole and can be replaced whole while readers hold
/// the old one (certificates: new handshakes use the new configuration,
/// established connections keep theirs).
pub struct Swap<T>(Arc<RwLock<Arc<T>>>);

impl<T> Swap<T> {
    pub fn new(v: T) -> Self {
        Swap(Arc::new(RwLock::new(Arc::new(v))))
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        self.0.read().clone()
    }

    /// Replaces the value for every later [`Swap::get`] (of every clone).
    pub fn replace(&self, v: T) {
        *self.0.write() = Arc::new(v);
    }
}

impl<T> Clone for Swap<T> {
    fn clone(&self) -> Self {
        Swap(self.0.clone())
    }
}

impl<T> std::fmt::Debug for Swap<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Swap(..)")
    }
}

/// Two configurations are equal when their settings are: the loaded
/// material follows from the files they name.
impl<T> PartialEq for Swap<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Eq for Swap<T> {}

/// *ring*, not aws-lc-rs: no C/CMake toolchain needed to build. rustls
/// 0.23.48 deprecates it for lacking post-quantum key exchange, which
/// neither Redis (OpenSSL) nor redis-cli negotiate today; X25519 and the
/// NIST curves are offered.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn versions(min: MinVersion) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static BOTH: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    static ONLY13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match min {
        MinVersion::Tls12 => &BOTH,
        MinVersion::Tls13 => &ONLY13,
    }
}

/// Why TLS settings could not be loaded, or a handshake with an upstream
/// node failed. `Display` is the text the configuration check and the logs
/// show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file is unreadable, malformed or empty
    /// (the text names the file).
    #[error("{0}")]
    File(String),
    /// rustls refused the settings: versions, the certificate and key
    /// together, a client verifier without roots.
    #[error("{0}")]
    Config(String),
    /// The name an upstream certificate is verified against is neither a
    /// DNS name nor an IP address.
    #[error("bad TLS server name {name:?}: {why}")]
    ServerName { name: String, why: String },
    /// The handshake with an upstream node failed (`invalid peer
    /// certificate: UnknownIssuer`, ...).
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
}

/// Every certificate in a PEM file (a chain: leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::File(format!("cannot read {}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::File(format!("{}: bad PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError::File(format!(
            "{}: no certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        TlsError::File(match e {
            rustls::pki_types::pem::Error::Io(e) => format!("cannot read {}: {e}", path.display()),
            e => format!("{}: no usable private key: {e}", path.display()),
        })
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots.add(c).map_err(|e| {
            TlsError::File(format!("{}: not a CA certificate: {e}", path.display()))
        })?;
    }
    Ok(roots)
}

/// The client-side listener's configuration.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
    client_auth: ClientAuth,
    min: MinVersion,
) -> Result<ServerConfig, TlsError> {
    let certs = load_certs(cert_file)?;
    let key = load_key(key_file)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(min))
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match (client_auth, client_ca_file) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(TlsError::Config(
                "client_auth needs client_ca_file".to_string(),
            ))
        }
        (auth, Some(ca)) => {
            let mut v =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider());
            if auth == ClientAuth::Optional {
                v = v.allow_unauthenticated();
            }
            builder
                .with_client_cert_verifier(v.build().map_err(|e| TlsError::Config(e.to_string()))?)
        }
    };
    builder.with_single_cert(certs, key).map_err(|e| {
        TlsError::Config(format!(
            "{} and {}: {e}",
            cert_file.display(),
            key_file.display()
        ))
    })
}

/// The upstream connections' configuration. Without `ca_file`, the system's
/// root certificates are trusted.
pub fn client_config(
    ca_file: Option<&Path>,
    cert_key: Option<(&Path, &Path)>,
    insecure_skip_verify: bool,
    min: MinVersion,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(min))
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = if insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
    } else {
        let roots = match ca_file {
            Some(ca) => roots(ca)?,
            None => {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(TlsError::Config(format!(
                        "no ca_file and no system root certificate found ({} errors)",
                        found.errors.len()
                    )));
                }
                roots
            }
        };
        builder.with_root_certificates(roots)
    };
    match cert_key {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| {
                TlsError::Config(format!("{} and {}: {e}", cert.display(), key.display()))
            }),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// `insecure_skip_verify`: any certificate is accepted (the handshake
/// signatures are still checked, so the peer holds the key it shows).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The name an upstream certificate is verified against: `server_name` when
/// configured, else the host of `addr` (an IP address verifies as an IP SAN).
pub fn server_name(configured: Option<&str>, addr: &str) -> Result<ServerName<'static>, TlsError> {
    let host = match configured {
        Some(n) => n,
        None => {
            let h = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            h.trim_start_matches('[').trim_end_matches(']')
        }
    };
    ServerName::try_from(host.to_string()).map_err(|e| TlsError::ServerName {
        name: host.to_string(),
        why: e.to_string(),
    })
}

/// The server side of a handshake on an accepted connection.
pub async fn accept(config: Arc<ServerConfig>, tcp: TcpStream) -> io::Result<TlsIo> {
    let s = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
    let (tcp, conn) = s.into_inner();
    Ok(TlsIo::new(tcp, rustls::Connection::Server(conn)))
}

/// The client side of a handshake on a connection to an upstream node; the
/// error says what failed (`invalid peer certificate: UnknownIssuer`, ...).
pub async fn connect(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    tcp: TcpStream,
) -> Result<TlsIo, TlsError> {
    match tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
    {
        Ok(s) => {
            let (tcp, conn) = s.into_inner();
            Ok(TlsIo::new(tcp, rustls::Connection::Client(conn)))
        }
        Err(e) => Err(TlsError::Handshake(e.to_string())),
    }
}

/// An established TLS connection driven without blocking: reads take what
/// the socket has, writes put out what it takes and keep the rest queued in
/// rustls ([`TlsIo::pending_write`]). The lock is never contended (one task
/// owns the connection); it lets the calls take `&self` like the plaintext
/// ones.
#[derive(Debug)]
pub struct TlsIo {
    tcp: TcpStream,
    conn: Mutex<rustls::Connection>,
    /// The socket read end of stream.
    eof: AtomicBool,
}

/// Most plaintext one read call hands out before returning.
const READ_MAX: usize = 64 * 1024;

impl TlsIo {
    fn new(tcp: TcpStream, conn: rustls::Connection) -> TlsIo {
        TlsIo {
            tcp,
            conn: Mutex::new(conn),
            eof: AtomicBool::new(false),
        }
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Decrypted bytes into `buf`, as `net::read_buf`: `Ok(0)` is end of
    /// stream, `Err(WouldBlock)` means nothing was there (the socket said so,
    /// so its readiness is cleared and waiting on it is right).
    pub fn read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let mut conn = self.conn.lock();
        let mut total = 0;
        loop {
            let state = match conn.process_new_packets() {
                Ok(s) => s,
                Err(e) => {
                    // Send the alert rustls queued, if the socket takes it.
                    let _ = flush(&self.tcp, &mut conn);
                    if total > 0 {
                        return Ok(total);
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("TLS: {e}"),
                    ));
                }
            };
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let start = buf.len();
                buf.resize(start + n, 0);
                conn.reader().read_exact(&mut buf[start..])?;
                total += n;
            }
            if conn.wants_write() {
                // Handshake messages after the handshake (tickets, key updates).
                match flush(&self.tcp, &mut conn) {
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock && total == 0 => return Err(e),
                    _ => {}
                }
            }
            if state.peer_has_closed() || self.eof.load(Ordering::Relaxed) || total >= READ_MAX {
                return Ok(total);
            }
            match conn.read_tls(&mut TcpIo(&self.tcp)) {
                Ok(0) => self.eof.store(true, Ordering::Relaxed),
                Ok(_) => {}
                Err(e) if total > 0 && e.kind() != io::ErrorKind::Interrupted => return Ok(total),
                Err(e) => return Err(e),
            }
        }
    }

    /// Encrypts and sends `buf`, as `net::write_buf`: what is taken is
    /// dropped from `buf`. Also sends what earlier calls left queued.
    /// `Err(WouldBlock)` only when nothing could be taken.
    pub fn write_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let mut conn = self.conn.lock();
        let mut total = 0;
        loop {
            match flush(&self.tcp, &mut conn) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && total > 0 => return Ok(total),
                Err(e) => return Err(e),
            }
            if buf.is_empty() {
                return Ok(total);
            }
            let n = conn.writer().write(buf)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf.advance(n);
            total += n;
        }
    }

    /// Encrypted bytes are queued that the socket did not take yet.
    pub fn pending_write(&self) -> bool {
        self.conn.lock().wants_write()
    }

    /// Sends what is queued; `Err(WouldBlock)` if the socket is full.
    pub fn flush(&self) -> io::Result<()> {
        flush(&self.tcp, &mut self.conn.lock())
    }

    /// Queues a `close_notify` alert.
    pub fn close_notify(&self) {
        self.conn.lock().send_close_notify();
    }
}

fn flush(tcp: &TcpStream, conn: &mut rustls::Connection) -> io::Result<()> {
    while conn.wants_write() {
        if conn.write_tls(&mut TcpIo(tcp))? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

/// The socket as `std::io` for rustls, without blocking.
struct TcpIo<'a>(&'a TcpStream);

impl Read for TcpIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for TcpIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
