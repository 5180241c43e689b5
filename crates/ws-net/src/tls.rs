//! TLS for `wss://` clients, with rustls.

use std::sync::{Arc, Mutex, OnceLock};

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// A TLS configuration can't be used.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// An added root certificate does not parse.
    #[error("invalid root certificate: {0}")]
    RootCertificate(rustls::Error),
    /// The URL's host is not a valid TLS server name.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// A TLS client configuration for `wss://` connects, built once: its root
/// store and settings are reused by every connect made with it, and cloning
/// it is cheap. A reconnecting client keeps one.
///
/// ```no_run
/// # async fn demo() -> Result<(), ws_net::ConnectError> {
/// let tls = ws_net::TlsConnector::webpki_roots()?;
/// for _ in 0..3 {
///     let (ws, _) = ws_net::ClientBuilder::new("wss://example.com/feed")?
///         .tls_connector(tls.clone())
///         .connect()
///         .await?;
///     drop(ws);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector").finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// Trust the webpki root certificates (Mozilla's). Built once per
    /// process: every call returns the same configuration.
    pub fn webpki_roots() -> Result<Self, TlsError> {
        static DEFAULT: OnceLock<TlsConnector> = OnceLock::new();
        if let Some(c) = DEFAULT.get() {
            return Ok(c.clone());
        }
        let built = TlsOptions::default().build()?;
        Ok(DEFAULT.get_or_init(|| built).clone())
    }

    /// Use this rustls configuration as is.
    pub fn from_config(config: Arc<ClientConfig>) -> Self {
        Self { config }
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    pub(crate) fn tokio(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.config.clone())
    }
}

/// The TLS settings of a client builder, and the connector built from them
/// once, shared by the builder's clones (a reconnecting client clones one
/// builder for each attempt).
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsOptions {
    extra_roots: Vec<Vec<u8>>,
    insecure: bool,
    connector: Option<TlsConnector>,
    built: Arc<Mutex<Option<TlsConnector>>>,
}

impl TlsOptions {
    pub(crate) fn add_root(&mut self, der: Vec<u8>) {
        self.extra_roots.push(der);
        self.built = Default::default();
    }

    pub(crate) fn set_insecure(&mut self, insecure: bool) {
        self.insecure = insecure;
        self.built = Default::default();
    }

    pub(crate) fn set_connector(&mut self, connector: TlsConnector) {
        self.connector = Some(connector);
    }

    /// The connector: the one given, the process's default, or the one
    /// built from these settings the first time it was asked for.
    pub(crate) fn connector(&self) -> Result<TlsConnector, TlsError> {
        if let Some(c) = &self.connector {
            return Ok(c.clone());
        }
        if self.extra_roots.is_empty() && !self.insecure {
            return TlsConnector::webpki_roots();
        }
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = &*built {
            return Ok(c.clone());
        }
        let c = self.build()?;
        *built = Some(c.clone());
        Ok(c)
    }

    fn build(&self) -> Result<TlsConnector, TlsError> {
        let provider = Arc::new(ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for der in &self.extra_roots {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(TlsError::RootCertificate)?;
        }
        let mut config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        if self.insecure {
            config
                .dangerous()
                .set_certificate_verifier(Arc::new(AcceptAnyCert(provider)));
        }
        Ok(TlsConnector::from_config(Arc::new(config)))
    }
}

pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::ServerName(host.to_owned()))
}

/// Accepts any certificate, still checking handshake signatures: for
/// `--insecure` testing against self-signed servers.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        verify_tls12_signature(
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
        verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_roots_are_built_once() {
        let a = TlsConnector::webpki_roots().unwrap();
        let b = TlsOptions::default().connector().unwrap();
        assert!(Arc::ptr_eq(a.config(), b.config()));
    }

    #[test]
    fn a_builders_clones_share_what_it_built() {
        let mut options = TlsOptions::default();
        options.set_insecure(true);
        let clone = options.clone();
        let a = options.connector().unwrap();
        let b = clone.connector().unwrap();
        assert!(Arc::ptr_eq(a.config(), b.config()), "built once for both");
        let c = clone.connector().unwrap();
        assert!(Arc::ptr_eq(a.config(), c.config()));
        // Changed settings build anew.
        let mut changed = clone.clone();
        changed.set_insecure(false);
        changed.add_root(vec![0]);
        assert!(matches!(
            changed.connector(),
            Err(TlsError::RootCertificate(_))
        ));
    }
}
