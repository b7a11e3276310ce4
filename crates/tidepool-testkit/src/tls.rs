//! Test certificates via rcgen.

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// A self-signed end-entity certificate for `hostnames` (DNS names, or IP
/// addresses such as `"127.0.0.1"`, which become IP SANs).
/// Returns `(cert_pem, key_pem)`; the key is PKCS#8 ECDSA P-256.
///
/// The certificate itself can be used as the client's trust anchor.
pub fn self_signed_cert<I>(hostnames: I) -> (String, String)
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let names: Vec<String> = hostnames.into_iter().map(|h| h.as_ref().to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).expect("rcgen self-signed certificate");
    (ck.cert.pem(), ck.key_pair.serialize_pem())
}

/// A CA plus a server certificate it signed, for tests that want a real chain.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate (trust anchor for clients).
    pub ca_cert_pem: String,
    /// Server (leaf) certificate signed by the CA.
    pub cert_pem: String,
    /// The server certificate's private key (PKCS#8).
    pub key_pem: String,
}

/// Generates a fresh CA and a leaf certificate for `hostnames` signed by it.
pub fn test_pki<I>(hostnames: I) -> TestPki
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let names: Vec<String> = hostnames.into_iter().map(|h| h.as_ref().to_string()).collect();

    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "tidepool test CA");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");

    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf_params = CertificateParams::new(names.clone()).expect("leaf params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names.first().cloned().unwrap_or_else(|| "localhost".into()));
    leaf_params.distinguished_name = dn;
    let leaf = leaf_params.signed_by(&leaf_key, &ca_cert, &ca_key).expect("leaf cert");

    TestPki { ca_cert_pem: ca_cert.pem(), cert_pem: leaf.pem(), key_pem: leaf_key.serialize_pem() }
}
