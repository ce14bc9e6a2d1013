//! Mutual TLS between Agora's roles, and the credentials behind it.
//!
//! Every role holds a certificate whose one URI SAN names it in SPIFFE form
//! (`spiffe://agora.local/order-service`), signed by the deployment's CA. A server asks every
//! caller for such a certificate and knows who calls ([`Peer`]); a client checks that the
//! server is the role it meant to reach, whatever address discovery gave it. There are no
//! host names to check: instances come and go at addresses Consul hands out.
//!
//! [`Credentials`] reads the certificate, its key and the CA bundle from files and reads them
//! again when they change ([`Credentials::watch`]): a renewed certificate (cert-manager, a
//! Secret the user rotates, `agora certs renew`) is used by the next handshake, and connections
//! already open carry on. A file that does not parse, or a key that does not match its
//! certificate, is logged and the credentials in use stay.

mod connect;
pub mod issue;
mod serve;

use std::{
    fmt,
    hash::{DefaultHasher, Hash, Hasher},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
    sign::CertifiedKey,
};
use tokio_util::sync::CancellationToken;

pub use connect::Connector;
pub use serve::{Peer, TlsConn, TlsListener, incoming};

/// The trust domain of Agora's identities unless configured otherwise.
pub const DEFAULT_TRUST_DOMAIN: &str = "agora.local";

/// How often the files are read again by default.
pub const DEFAULT_RELOAD_EVERY: Duration = Duration::from_secs(10);

/// A workload identity: `spiffe://TRUST_DOMAIN/NAME`, NAME being a role (`order-service`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    trust_domain: String,
    name: String,
}

impl Identity {
    pub fn new(trust_domain: impl Into<String>, name: impl Into<String>) -> Self {
        Self { trust_domain: trust_domain.into(), name: name.into() }
    }

    /// Parses `spiffe://DOMAIN/NAME`; NAME is one path segment.
    pub fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("spiffe://")?;
        let (domain, name) = rest.split_once('/')?;
        let valid = |s: &str| {
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        };
        (valid(domain) && valid(name)).then(|| Self::new(domain, name))
    }

    /// The role (or other workload) the identity names.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn uri(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}/{}", self.trust_domain, self.name)
    }
}

/// The SPIFFE identity a certificate carries: its one `spiffe://` URI SAN.
pub fn identity_of(cert: &CertificateDer<'_>) -> Result<Identity, String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| format!("unreadable certificate: {e}"))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| format!("unreadable subjectAltName: {e}"))?
        .ok_or("the certificate has no subjectAltName, so no SPIFFE identity")?;
    let mut found = san.value.general_names.iter().filter_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some(*uri),
        _ => None,
    });
    let uri = found.next().ok_or("the certificate has no spiffe:// URI SAN")?;
    if found.next().is_some() {
        return Err("the certificate has more than one spiffe:// URI SAN".into());
    }
    Identity::parse(uri).ok_or_else(|| format!("{uri:?} is not spiffe://DOMAIN/NAME"))
}

/// Where a role's credentials live: PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The role's certificate (and any intermediates after it).
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificates whose signatures are trusted (one or more: a bundle holds the old CA
    /// and the new while a CA is rotated).
    pub ca: PathBuf,
}

/// What one reading of the files gave.
struct Material {
    key: Arc<CertifiedKey>,
    roots: Arc<RootCertStore>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    identity: Identity,
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Material").field("identity", &self.identity).finish_non_exhaustive()
    }
}

/// A role's certificate, key and trusted CAs, read again when the files change.
pub struct Credentials {
    files: TlsFiles,
    trust_domain: String,
    provider: Arc<CryptoProvider>,
    watched: Watched<Material>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("files", &self.files)
            .field("identity", &self.material().identity)
            .finish_non_exhaustive()
    }
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
#[error("TLS credentials ({path}): {reason}")]
pub struct CredentialsError {
    path: String,
    reason: String,
}

fn error(path: &Path, reason: impl fmt::Display) -> CredentialsError {
    CredentialsError { path: path.display().to_string(), reason: reason.to_string() }
}

/// The crypto every configuration here uses.
fn provider() -> Arc<CryptoProvider> {
    // ring: rustls's alternative, aws-lc, needs cmake and minutes more of every cold build.
    // ring has no post-quantum key exchange (hence rustls's deprecation); X25519 and P-256
    // between a deployment's own roles and its clients (docs/security.md).
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The parser of a [`Watched`] value.
type Parse<T> = Box<dyn Fn(&[Vec<u8>]) -> Result<T, CredentialsError> + Send + Sync>;

/// Something parsed from files, parsed again when their bytes change. A reading that does not
/// parse leaves the last good one in use.
struct Watched<T> {
    paths: Vec<PathBuf>,
    parse: Parse<T>,
    current: RwLock<Arc<T>>,
    /// A hash of the bytes behind `current` (or behind the last failed reading).
    seen: Mutex<u64>,
}

impl<T> Watched<T> {
    fn load(
        paths: Vec<PathBuf>,
        parse: impl Fn(&[Vec<u8>]) -> Result<T, CredentialsError> + Send + Sync + 'static,
    ) -> Result<Self, CredentialsError> {
        let bytes = read_all(&paths)?;
        let current = parse(&bytes)?;
        Ok(Self {
            paths,
            parse: Box::new(parse),
            current: RwLock::new(Arc::new(current)),
            seen: Mutex::new(fingerprint(&bytes)),
        })
    }

    fn get(&self) -> Arc<T> {
        self.current.read().unwrap().clone()
    }

    fn reload(&self) -> Result<bool, CredentialsError> {
        let bytes = read_all(&self.paths)?;
        let print = fingerprint(&bytes);
        let mut seen = self.seen.lock().unwrap();
        if *seen == print {
            return Ok(false);
        }
        // Remembered before parsing, so that a bad file is reported once, not on every tick.
        *seen = print;
        let parsed = (self.parse)(&bytes)?;
        *self.current.write().unwrap() = Arc::new(parsed);
        Ok(true)
    }
}

/// Credentials read from files that may change: [`Credentials`], [`PublicCert`].
pub trait Reload: Send + Sync + 'static {
    /// Reads the files again: `Ok(true)` when they changed and now serve, `Ok(false)` when
    /// they did not change, an error (and what was read before kept) when they do not parse.
    fn reload(&self) -> Result<bool, CredentialsError>;

    /// What changed, for the log.
    fn describe(&self) -> String;

    /// Reads the files again every `every` until `shutdown`, logging what changed.
    fn watch(self: &Arc<Self>, every: Duration, shutdown: CancellationToken)
    where
        Self: Sized,
    {
        watch(self, every, shutdown);
    }
}

/// A server configuration of `provider`'s with `verifier` and `resolver`, offering `alpn`.
fn server_config(
    provider: &Arc<CryptoProvider>,
    verifier: Arc<dyn ClientCertVerifier>,
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
    alpn: &[&[u8]],
) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default versions")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Reads `what`'s files again every `every` until `shutdown` (or until `what` is dropped),
/// logging what changed.
fn watch<R: Reload>(what: &Arc<R>, every: Duration, shutdown: CancellationToken) {
    let what = Arc::downgrade(what);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(what) = what.upgrade() else { return };
            match what.reload() {
                Ok(true) => tracing::info!("{} changed on disk; new handshakes use it", what.describe()),
                Ok(false) => {}
                Err(e) => tracing::error!("{e}; what was read before stays in use"),
            }
        }
    });
}

impl Reload for Credentials {
    fn reload(&self) -> Result<bool, CredentialsError> {
        self.watched.reload()
    }

    fn describe(&self) -> String {
        format!("the certificate of {} ({})", self.identity(), self.files.cert.display())
    }
}

impl Credentials {
    /// Reads the files; the certificate must name an identity in `trust_domain`.
    pub fn load(files: TlsFiles, trust_domain: &str) -> Result<Arc<Self>, CredentialsError> {
        let provider = provider();
        let paths = vec![files.cert.clone(), files.key.clone(), files.ca.clone()];
        let (parse_files, domain, parse_provider) = (files.clone(), trust_domain.to_owned(), provider.clone());
        // The identity the first reading found: a renewed certificate must name it too (one
        // naming another role would fail every caller's check, and call as that role).
        let first = std::sync::OnceLock::<Identity>::new();
        let watched = Watched::load(paths, move |bytes| {
            let material = parse(&parse_files, bytes, &domain, &parse_provider)?;
            let first = first.get_or_init(|| material.identity.clone());
            if *first != material.identity {
                return Err(error(
                    &parse_files.cert,
                    format!("now names {}, not {first} as when this process started", material.identity),
                ));
            }
            Ok(material)
        })?;
        Ok(Arc::new(Self { files, trust_domain: trust_domain.to_owned(), provider, watched }))
    }

    fn material(&self) -> Arc<Material> {
        self.watched.get()
    }

    /// The identity the current certificate names.
    pub fn identity(&self) -> Identity {
        self.material().identity.clone()
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The identity a role of this deployment has.
    pub fn identity_of_role(&self, role: &str) -> Identity {
        Identity::new(&self.trust_domain, role)
    }

    /// A server configuration that requires a client certificate from a trusted CA naming an
    /// identity of this trust domain, offering `alpn`.
    ///
    /// Sessions are never resumed: a resumed session skips the certificate checks, so a
    /// certificate that expired or whose CA was dropped would keep its identity for as long as
    /// its client kept resuming.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let verifier = Arc::new(ClientVerifier(self.clone()));
        let mut config = server_config(&self.provider, verifier, Arc::new(OwnCert(self.clone())), alpn);
        let config_mut = Arc::get_mut(&mut config).expect("just built");
        config_mut.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config_mut.send_tls13_tickets = 0;
        config
    }

    /// A client configuration that presents this role's certificate and accepts only a server
    /// whose certificate, from a trusted CA, names `expect`.
    pub fn client_config(self: &Arc<Self>, expect: Identity) -> Arc<rustls::ClientConfig> {
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerVerifier { creds: self.clone(), expect }))
            .with_client_cert_resolver(Arc::new(OwnCert(self.clone())));
        config.alpn_protocols = vec![b"h2".to_vec()];
        // Every connection is checked in full (see `server_config`).
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
    }
}

fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, CredentialsError> {
    paths.iter().map(|path| std::fs::read(path).map_err(|e| error(path, e))).collect()
}

fn fingerprint(bytes: &[Vec<u8>]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// A certificate chain and its key, checked to go together.
fn certified_key(
    (cert_path, cert): (&Path, &[u8]),
    (key_path, key): (&Path, &[u8]),
    provider: &Arc<CryptoProvider>,
) -> Result<CertifiedKey, CredentialsError> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(cert_path, format!("not PEM certificates: {e}")))?;
    if chain.is_empty() {
        return Err(error(cert_path, "holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| error(key_path, format!("not a PEM private key: {e}")))?;
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| error(key_path, format!("does not go with {}: {e}", cert_path.display())))
}

fn parse(
    files: &TlsFiles,
    bytes: &[Vec<u8>],
    trust_domain: &str,
    provider: &Arc<CryptoProvider>,
) -> Result<Material, CredentialsError> {
    let [cert, key, ca] = bytes else { unreachable!("three files are read") };
    let certified = certified_key((&files.cert, cert), (&files.key, key), provider)?;
    let identity = identity_of(&certified.cert[0]).map_err(|e| error(&files.cert, e))?;
    if identity.trust_domain() != trust_domain {
        return Err(error(&files.cert, format!("names {identity}, outside the trust domain {trust_domain}")));
    }
    let mut roots = RootCertStore::empty();
    for ca_cert in CertificateDer::pem_slice_iter(ca) {
        let ca_cert = ca_cert.map_err(|e| error(&files.ca, format!("not PEM certificates: {e}")))?;
        roots.add(ca_cert).map_err(|e| error(&files.ca, format!("not a CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(error(&files.ca, "holds no CA certificate"));
    }
    let roots = Arc::new(roots);
    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| error(&files.ca, e))?;
    Ok(Material { key: Arc::new(certified), roots, client_verifier, identity })
}

/// A server's certificate for clients outside the deployment (the gateway's HTTPS): a
/// certificate chain and its key, read again when the files change. No client certificate is
/// asked for.
pub struct PublicCert {
    cert: PathBuf,
    provider: Arc<CryptoProvider>,
    watched: Watched<CertifiedKey>,
}

impl fmt::Debug for PublicCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicCert").field("cert", &self.cert).finish_non_exhaustive()
    }
}

impl Reload for PublicCert {
    fn reload(&self) -> Result<bool, CredentialsError> {
        self.watched.reload()
    }

    fn describe(&self) -> String {
        format!("the certificate {}", self.cert.display())
    }
}

impl PublicCert {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, CredentialsError> {
        let provider = provider();
        let (cert_path, key_path, parse_provider) = (cert.to_owned(), key.to_owned(), provider.clone());
        let watched = Watched::load(vec![cert.to_owned(), key.to_owned()], move |bytes| {
            let [cert, key] = bytes else { unreachable!("two files are read") };
            certified_key((&cert_path, cert), (&key_path, key), &parse_provider)
        })?;
        Ok(Arc::new(Self { cert: cert.to_owned(), provider, watched }))
    }

    /// A server configuration offering `alpn`, with the current certificate at each handshake.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let anyone = rustls::server::WebPkiClientVerifier::no_client_auth();
        server_config(&self.provider, anyone, Arc::new(PublicResolver(self.clone())), alpn)
    }
}

#[derive(Debug)]
struct PublicResolver(Arc<PublicCert>);

impl rustls::server::ResolvesServerCert for PublicResolver {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.watched.get())
    }
}

/// Hands out the current certificate, to the server side and the client side alike.
#[derive(Debug)]
struct OwnCert(Arc<Credentials>);

impl rustls::server::ResolvesServerCert for OwnCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().key.clone())
    }
}

impl rustls::client::ResolvesClientCert for OwnCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn refused(reason: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(Arc::new(
        std::io::Error::new(std::io::ErrorKind::PermissionDenied, reason),
    ))))
}

/// A client certificate from a trusted CA (chain and validity checked by webpki) that names
/// an identity of this trust domain.
#[derive(Debug)]
struct ClientVerifier(Arc<Credentials>);

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Every caller has one certificate only; no hint is needed to choose it.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.material().client_verifier.verify_client_cert(end_entity, intermediates, now)?;
        let identity = identity_of(end_entity).map_err(refused)?;
        if identity.trust_domain() != self.0.trust_domain {
            return Err(refused(format!("{identity} is outside the trust domain {}", self.0.trust_domain)));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A server certificate from a trusted CA that names the identity the client meant to reach.
#[derive(Debug)]
struct ServerVerifier {
    creds: Arc<Credentials>,
    expect: Identity,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let material = self.creds.material();
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &material.roots,
            intermediates,
            now,
            self.creds.provider.signature_verification_algorithms.all,
        )?;
        let identity = identity_of(end_entity).map_err(refused)?;
        if identity != self.expect {
            return Err(refused(format!("the server is {identity}, not {}", self.expect)));
        }
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
            &self.creds.provider.signature_verification_algorithms,
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
            &self.creds.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.creds.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewed_certificate_must_name_the_identity_the_process_started_with() {
        let dir = tempfile::tempdir().unwrap();
        let ca = issue::Ca::new("test", Duration::from_secs(86_400)).unwrap();
        let files =
            TlsFiles { cert: dir.path().join("c.pem"), key: dir.path().join("k.pem"), ca: dir.path().join("ca.pem") };
        let write = |role: &str| {
            let now = std::time::SystemTime::now();
            let issued =
                ca.issue(&Identity::new("agora.local", role), &[], now, now + Duration::from_secs(3600)).unwrap();
            std::fs::write(&files.key, issued.key_pem).unwrap();
            std::fs::write(&files.cert, issued.cert_pem).unwrap();
        };
        std::fs::write(&files.ca, ca.cert_pem()).unwrap();
        write("order-service");
        let creds = Credentials::load(files.clone(), "agora.local").unwrap();
        write("order-service");
        assert!(creds.reload().unwrap(), "a renewal of the same identity is taken");
        write("gateway");
        let refused = creds.reload().unwrap_err().to_string();
        assert!(refused.contains("now names spiffe://agora.local/gateway"), "{refused}");
        assert_eq!(creds.identity().name(), "order-service", "the credentials in use stay");
    }

    #[test]
    fn identities_parse_from_spiffe_uris_only() {
        let id = Identity::parse("spiffe://agora.local/order-service").unwrap();
        assert_eq!((id.trust_domain(), id.name()), ("agora.local", "order-service"));
        assert_eq!(id.uri(), "spiffe://agora.local/order-service");
        for bad in [
            "https://agora.local/order-service",
            "spiffe://agora.local",
            "spiffe://agora.local/",
            "spiffe:///order-service",
            "spiffe://agora.local/a/b",
            "spiffe://Agora.local/order-service",
        ] {
            assert_eq!(Identity::parse(bad), None, "{bad}");
        }
    }
}
