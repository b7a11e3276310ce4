//! TLS towards upstream PostgreSQL, with libpq's `sslmode` semantics:
//!
//! | mode          | TLS                         | certificate check                                  |
//! |---------------|-----------------------------|----------------------------------------------------|
//! | `disable`     | never                       | –                                                  |
//! | `prefer`      | if the server offers it     | none, or the chain if a CA is given (as libpq)     |
//! | `require`     | always                      | none, or the chain if a CA is given (as libpq)     |
//! | `verify-ca`   | always                      | chain against the roots; host name not checked     |
//! | `verify-full` | always                      | chain against the roots and host name vs. the cert |
//!
//! libpq checks the chain in `prefer`/`require` when a root certificate file exists; here that
//! is an explicit `upstream_tls_ca` or `sslrootcert=` (there is no `~/.postgresql/root.crt`
//! lookup). Roots for the `verify-*` modes are that CA file, else the operating system's trust
//! store (`sslrootcert=system`, as in libpq 16, also selects it and implies `verify-full`).
//!
//! System roots come from `rustls-native-certs` (maintained by the rustls project): it reads the
//! OS store at startup (honouring `SSL_CERT_FILE`/`SSL_CERT_DIR`), so CA bundles an operator
//! installs (cloud database CAs, a company CA) are trusted, unlike a compiled-in Mozilla list
//! (`webpki-roots`) that ages with the binary. `rustls-platform-verifier` was not chosen because
//! `verify-ca` needs rustls' own WebPKI verifier (to skip only the name check) on every platform.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::config::{UpstreamTls, UpstreamUrl};

/// Where trusted root certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The operating system's trust store.
    System,
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
}

/// What is checked of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Nothing: encryption only (libpq's `require` without a root certificate).
    Nothing,
    /// The chain up to a trusted root; any host name (`verify-ca`).
    Chain,
    /// The chain and that the certificate names the host connected to (`verify-full`).
    ChainAndName,
}

/// The effective TLS settings of one upstream: the database's `upstream_tls`/`upstream_tls_ca`
/// combined with the URL's `sslmode`/`sslrootcert` (the URL wins, key by key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPolicy {
    pub mode: UpstreamTls,
    pub verify: Verify,
    /// Roots used when `verify` is not `Nothing`.
    pub roots: Roots,
}

impl UpstreamTls {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamTls::Disable => "disable",
            UpstreamTls::Prefer => "prefer",
            UpstreamTls::Require => "require",
            UpstreamTls::VerifyCa => "verify-ca",
            UpstreamTls::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> Option<UpstreamTls> {
        Some(match s {
            "disable" => UpstreamTls::Disable,
            // tidepool never starts without TLS and then upgrades; `allow` behaves as `prefer`.
            "allow" | "prefer" => UpstreamTls::Prefer,
            "require" => UpstreamTls::Require,
            "verify-ca" => UpstreamTls::VerifyCa,
            "verify-full" => UpstreamTls::VerifyFull,
            _ => return None,
        })
    }
}

impl TlsPolicy {
    /// Combines the configured mode and CA file with the URL's `sslmode` and `sslrootcert`.
    pub fn resolve(url: &UpstreamUrl, configured: UpstreamTls, configured_ca: Option<&Path>) -> Result<TlsPolicy, String> {
        let url_mode = match url.sslmode.as_deref() {
            Some(m) => Some(UpstreamTls::parse(m).ok_or_else(|| format!("unknown sslmode {m:?} (disable, allow, prefer, require, verify-ca, verify-full)"))?),
            None => None,
        };
        let (mode, explicit_roots) = match url.sslrootcert.as_deref() {
            // libpq 16: sslrootcert=system defaults to verify-full and refuses weaker modes, so a
            // URL meant to be verified cannot silently lose the check.
            Some("system") => {
                let mode = url_mode.unwrap_or(UpstreamTls::VerifyFull);
                if mode != UpstreamTls::VerifyFull {
                    return Err(format!("sslmode={} may not be used with sslrootcert=system (use verify-full)", mode.as_str()));
                }
                (mode, Some(Roots::System))
            }
            Some("") => return Err("sslrootcert is empty".into()),
            Some(path) => (url_mode.unwrap_or(configured), Some(Roots::File(PathBuf::from(path)))),
            None => (url_mode.unwrap_or(configured), configured_ca.map(|p| Roots::File(p.to_owned()))),
        };
        let verify = match mode {
            UpstreamTls::Disable => Verify::Nothing,
            UpstreamTls::Prefer | UpstreamTls::Require if explicit_roots.is_some() => Verify::Chain,
            UpstreamTls::Prefer | UpstreamTls::Require => Verify::Nothing,
            UpstreamTls::VerifyCa => Verify::Chain,
            UpstreamTls::VerifyFull => Verify::ChainAndName,
        };
        Ok(TlsPolicy { mode, verify, roots: explicit_roots.unwrap_or(Roots::System) })
    }

    /// For error messages (shown to clients, so no file paths).
    pub fn describe(&self) -> String {
        let roots = match (&self.verify, &self.roots) {
            (Verify::Nothing, _) => "certificate not verified",
            (_, Roots::System) => "system roots",
            (_, Roots::File(_)) => "configured CA",
        };
        format!("sslmode={}, {roots}", self.mode.as_str())
    }

    /// The rustls client configuration implementing this policy. Fails when the roots cannot be
    /// had (unreadable or empty CA file, empty system store), so `verify-*` never degrades.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match self.verify {
            Verify::Nothing => Arc::new(NoVerify(provider.clone())),
            Verify::Chain | Verify::ChainAndName => {
                let roots = load_roots(&self.roots)?;
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("cannot build the certificate verifier: {e}"))?;
                if self.verify == Verify::Chain {
                    Arc::new(ChainOnly(webpki))
                } else {
                    webpki
                }
            }
        };
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Arc::new(cfg))
    }
}

fn load_roots(roots: &Roots) -> Result<rustls::RootCertStore, String> {
    let mut store = rustls::RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read CA certificates from {}: {e}", path.display()))?;
            for c in certs {
                store.add(c).map_err(|e| format!("bad CA certificate in {}: {e}", path.display()))?;
            }
            if store.is_empty() {
                return Err(format!("no certificates in CA file {}", path.display()));
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "while loading the system's trusted root certificates");
            }
            let (_, bad) = store.add_parsable_certificates(found.certs);
            if bad > 0 {
                tracing::warn!(count = bad, "unparsable certificates in the system trust store were skipped");
            }
            if store.is_empty() {
                return Err("no trusted root certificates: the system trust store is empty or unreadable; \
                            set upstream_tls_ca (or sslrootcert= in the url) to a CA file"
                    .into());
            }
        }
    }
    Ok(store)
}

/// `verify-ca`: rustls' WebPKI verifier checks everything (chain to a trusted root, validity
/// dates, key usage, signatures); only its final step, the host-name match, is waived. rustls
/// checks the name strictly after the chain succeeded, and the name errors are the only ones
/// accepted here, so an untrusted, expired or malformed certificate is still refused.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer`/`require` without a CA: encryption without certificate verification, as libpq's
/// `sslmode=require` without a root certificate. Handshake signatures are still checked (the
/// server proves it holds the key of the certificate it sent), which rules out nothing an
/// active attacker cannot do with a certificate of their own.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use UpstreamTls::*;

    fn url(q: &str) -> UpstreamUrl {
        UpstreamUrl::parse(&format!("postgres://u@db.example.com/app{q}")).unwrap()
    }

    fn resolve(q: &str, mode: UpstreamTls, ca: Option<&str>) -> Result<TlsPolicy, String> {
        TlsPolicy::resolve(&url(q), mode, ca.map(Path::new))
    }

    #[test]
    fn modes_and_roots() {
        let p = resolve("", Prefer, None).unwrap();
        assert_eq!((p.mode, p.verify), (Prefer, Verify::Nothing));
        let p = resolve("?sslmode=require", Disable, None).unwrap();
        assert_eq!((p.mode, p.verify), (Require, Verify::Nothing));
        // libpq: a root certificate makes require check the chain.
        let p = resolve("", Require, Some("/ca.pem")).unwrap();
        assert_eq!((p.mode, p.verify, p.roots), (Require, Verify::Chain, Roots::File("/ca.pem".into())));
        let p = resolve("?sslmode=verify-ca", Prefer, None).unwrap();
        assert_eq!((p.mode, p.verify, p.roots), (VerifyCa, Verify::Chain, Roots::System));
        let p = resolve("?sslmode=verify-full&sslrootcert=/u.pem", Require, Some("/c.pem")).unwrap();
        assert_eq!((p.verify, p.roots), (Verify::ChainAndName, Roots::File("/u.pem".into())));
        let p = resolve("?sslrootcert=system", Disable, None).unwrap();
        assert_eq!((p.mode, p.verify, p.roots), (VerifyFull, Verify::ChainAndName, Roots::System));
        let p = resolve("?sslmode=disable", VerifyFull, Some("/c.pem")).unwrap();
        assert_eq!((p.mode, p.verify), (Disable, Verify::Nothing));
        assert!(resolve("?sslmode=require&sslrootcert=system", Prefer, None).unwrap_err().contains("verify-full"));
        assert!(resolve("?sslmode=verify_full", Prefer, None).unwrap_err().contains("unknown sslmode"));
    }

    #[test]
    fn ca_file_errors_are_clear() {
        let p = resolve("?sslmode=verify-full", Prefer, Some("/nonexistent/ca.pem")).unwrap();
        assert!(p.client_config().unwrap_err().contains("/nonexistent/ca.pem"));
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let p = resolve("?sslmode=verify-ca", Prefer, Some(empty.to_str().unwrap())).unwrap();
        assert!(p.client_config().unwrap_err().contains("no certificates"));
        // Without verification no roots are needed.
        assert!(resolve("?sslmode=require", Prefer, None).unwrap().client_config().is_ok());
    }
}
