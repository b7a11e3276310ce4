//! Client-side TLS on the Postgres listener.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;

use anyhow::Result;
use tidepool_testkit::{run_psql, self_signed_cert, TestCluster};
use tokio_postgres::config::SslMode;

use crate::common::*;
use crate::raw::{ssl_request, startup_packet, Raw};

struct Certs {
    _dir: tempfile::TempDir,
    cert_pem: String,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn certs() -> Result<Certs> {
    let (cert_pem, key_pem) = self_signed_cert(["localhost", "127.0.0.1"]);
    let dir = tempfile::tempdir()?;
    let cert = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    std::fs::write(&cert, &cert_pem)?;
    std::fs::write(&key, &key_pem)?;
    Ok(Certs { _dir: dir, cert_pem, cert, key })
}

fn tls_lines(setup: Setup, certs: &Certs, mode: &str) -> Setup {
    let q = |p: &Path| p.display().to_string().replace('\\', "\\\\");
    setup.server(&format!("tls_cert = \"{}\"", q(&certs.cert))).server(&format!("tls_key = \"{}\"", q(&certs.key))).server(&format!("tls_mode = \"{mode}\""))
}

/// A rustls connector for tokio-postgres that trusts exactly `cert_pem`.
fn connector(cert_pem: &str) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

async fn connect_tls(config: &tokio_postgres::Config, cert_pem: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = config.connect(connector(cert_pem).expect("tls connector")).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_works_and_plaintext_is_refused() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("tls").await?;
    let certs = certs()?;
    let p = tls_lines(Setup::new(cluster, &db), &certs, "require").start().await?;

    // tokio-postgres over rustls, certificate verified against the test cert.
    let mut cfg = p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    cfg.ssl_mode(SslMode::Require);
    let c = connect_tls(&cfg, &certs.cert_pem).await?;
    let row = c.query_one("SELECT $1::text || ' over tls'", &[&"hello"]).await?;
    assert_eq!(row.get::<_, String>(0), "hello over tls");
    // Cancel over TLS reaches tidepool as well (CancelRequest after SSLRequest).
    c.cancel_token().cancel_query(connector(&certs.cert_pem)?).await?;
    assert_eq!(c.query_one("SELECT 1", &[]).await?.get::<_, i32>(0), 1);

    // A client trusting another certificate fails the handshake.
    let (other_cert, _) = self_signed_cert(["localhost", "127.0.0.1"]);
    assert!(connect_tls(&cfg, &other_cert).await.is_err(), "untrusted certificate accepted");

    // Plaintext is refused with an error.
    let mut plain = p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    plain.ssl_mode(SslMode::Disable);
    let msg = expect_code(try_connect(&plain).await, "28000");
    assert!(msg.contains("TLS"), "{msg}");

    // psql: sslmode=require and verify-full work, sslmode=disable is refused.
    let base = format!("postgresql://{SCRAM_CLIENT}:{SCRAM_CLIENT_PW}@127.0.0.1:{}/{DB}", p.pg.port());
    let out = run_psql(&format!("{base}?sslmode=require"), "SELECT 'psql over tls'").await?.ok()?;
    assert_eq!(out.stdout.trim(), "psql over tls");
    let out = run_psql(&format!("{base}?sslmode=verify-full&sslrootcert={}", certs.cert.display()), "SELECT 'verified'").await?.ok()?;
    assert_eq!(out.stdout.trim(), "verified");
    let out = run_psql(&format!("{base}?sslmode=disable"), "SELECT 1").await?;
    assert!(!out.success(), "plaintext psql must fail: {out:?}");
    assert!(out.stderr.contains("TLS is required"), "{}", out.stderr);

    // SSLRequest with bytes stuffed after it in the same write: closed without a TLS handshake.
    let mut r = Raw::connect(p.pg).await?;
    let mut stuffed = ssl_request();
    stuffed.extend_from_slice(&startup_packet(&[("user", TRUST_CLIENT), ("database", DB)]));
    r.send(&stuffed).await?;
    let first = r.read_byte().await?;
    assert_ne!(first, Some(b'S'), "must not start TLS after stuffed bytes");
    assert_ne!(first, Some(b'N'));
    if first.is_some() {
        // Only an ErrorResponse may follow, then the socket closes.
        assert_eq!(first, Some(b'E'));
        let _ = r.read_until_closed().await;
    }
    drop(c);
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_allow_mode_serves_both() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("tls_allow").await?;
    let certs = certs()?;
    let p = tls_lines(Setup::new(cluster, &db), &certs, "allow").start().await?;
    let mut cfg = p.config(MD5_CLIENT, Some(MD5_CLIENT_PW));
    cfg.ssl_mode(SslMode::Require);
    let tls = connect_tls(&cfg, &certs.cert_pem).await?;
    cfg.ssl_mode(SslMode::Disable);
    let plain = try_connect(&cfg).await?;
    assert_eq!(tls.query_one("SELECT 1", &[]).await?.get::<_, i32>(0), 1);
    assert_eq!(plain.query_one("SELECT 2", &[]).await?.get::<_, i32>(0), 2);
    drop((tls, plain));
    p.stop().await;
    Ok(())
}
