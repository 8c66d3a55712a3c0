//! TLS for webhook delivery: rustls client configurations (ring crypto provider only),
//! CSR generation for client certificates (mTLS), and checks of uploaded certificates.
//!
//! No error message or `Debug` output of this module contains private key material.

use std::sync::Arc;

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::pkey::PKey;
use openssl::x509::{X509, X509NameRef, X509VerifyResult};
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// ALPN protocols offered to receivers, in order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// Longest common name allowed by X.520 (`ub-common-name`).
const MAX_COMMON_NAME_LEN: usize = 64;

/// Errors of the TLS module. Messages name the offending input and the reason; they never
/// contain private key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The input has no PEM block at all.
    #[error("{what}: not PEM (no \"-----BEGIN ...-----\" line found)")]
    NotPem {
        /// Which input (e.g. "trusted issuers", "client certificate chain").
        what: &'static str,
    },
    /// The PEM is syntactically broken.
    #[error("{what}: invalid PEM: {reason}")]
    InvalidPem {
        /// Which input.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// The PEM contains no CERTIFICATE block.
    #[error("{what}: no certificate found (expected \"-----BEGIN CERTIFICATE-----\" blocks)")]
    NoCertificate {
        /// Which input.
        what: &'static str,
    },
    /// A PEM block is of a kind that is not expected here.
    #[error("{what}: PEM block #{index} is {found}, only CERTIFICATE blocks are expected")]
    UnexpectedPemBlock {
        /// Which input.
        what: &'static str,
        /// 1-based index of the block.
        index: usize,
        /// What was found (never the content).
        found: String,
    },
    /// A certificate's DER does not parse or cannot be used.
    #[error("{what}: certificate #{index} is invalid: {reason}")]
    InvalidCertificate {
        /// Which input.
        what: &'static str,
        /// 1-based index of the certificate.
        index: usize,
        /// Why it was rejected.
        reason: String,
    },
    /// The certificate chain is not in leaf-first issuing order.
    #[error(
        "{what}: certificate #{index} ({issuer}) did not issue certificate #{prev} ({subject}); the chain must start with the leaf, each certificate followed by its issuer"
    )]
    ChainOrder {
        /// Which input.
        what: &'static str,
        /// 1-based index of the certificate expected to be the issuer.
        index: usize,
        /// 1-based index of the certificate it should have issued.
        prev: usize,
        /// Subject of the certificate `prev`.
        subject: String,
        /// Subject of the certificate `index`.
        issuer: String,
    },
    /// The private key PEM is unreadable or of an unsupported type.
    #[error("{what}: invalid private key: {reason}")]
    InvalidPrivateKey {
        /// Which input.
        what: &'static str,
        /// Why it was rejected (never contains key material).
        reason: String,
    },
    /// The private key does not belong to the leaf certificate.
    #[error(
        "the private key does not match the leaf certificate (subject {subject}): the certificate was issued for another key"
    )]
    KeyMismatch {
        /// Subject of the leaf certificate.
        subject: String,
    },
    /// A name given for a CSR is invalid.
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// "common name" or "DNS name".
        what: &'static str,
        /// The name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// CSR generation failed.
    #[error("cannot generate the CSR: {reason}")]
    Csr {
        /// Why it failed.
        reason: String,
    },
    /// rustls rejected the configuration.
    #[error("cannot build the TLS configuration: {reason}")]
    Config {
        /// Why it failed.
        reason: String,
    },
}

/// Summary of an uploaded certificate chain's leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSummary {
    /// Subject distinguished name, e.g. `CN=hooks.example.com, O=Example`.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the leaf certificate's DER, lowercase hex without separators.
    pub sha256_fingerprint: String,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// rustls `ClientConfig` for one endpoint.
///
/// Verifies the server against `trusted_issuers_pem` (one or more PEM CA certificates the
/// tenant gave) if `Some`, else against the webpki-roots public roots. Presents
/// `client_identity` = (certificate chain PEM, private key PEM in PKCS#8, SEC1 or PKCS#1) if
/// `Some`. ALPN `h2`, `http/1.1`. Always uses the ring crypto provider, never the process
/// default.
pub fn client_config(
    trusted_issuers_pem: Option<&str>,
    client_identity: Option<(&str, &str)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let roots = match trusted_issuers_pem {
        Some(pem) => root_store(pem, "trusted issuers")?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let config_err = |e: rustls::Error| TlsError::Config {
        reason: e.to_string(),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_err)?
        .with_root_certificates(roots);
    let mut config = match client_identity {
        None => builder.with_no_client_auth(),
        Some((chain_pem, key_pem)) => {
            let what = "client certificate chain";
            let chain = parse_pem_certificates(chain_pem, what)?;
            check_chain_and_key(&chain, key_pem, what)?;
            let key = parse_private_key(key_pem, "client private key")?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::InvalidPrivateKey {
                    what: "client private key",
                    reason: e.to_string(),
                })?
        }
    };
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A new ECDSA P-256 key (PKCS#8 PEM) and a PEM CSR for `common_name` with `dns_names` as
/// subject alternative names (an entry that is an IP address becomes an IP SAN). The key stays
/// in the host. Returns `(key_pem, csr_pem)`.
pub fn generate_csr(common_name: &str, dns_names: &[String]) -> Result<(String, String), TlsError> {
    let cn = common_name.trim();
    if cn.is_empty() || cn.len() > MAX_COMMON_NAME_LEN || cn.chars().any(char::is_control) {
        return Err(TlsError::InvalidName {
            what: "common name",
            name: common_name.to_owned(),
            reason: format!(
                "must be 1 to {MAX_COMMON_NAME_LEN} characters without control characters"
            ),
        });
    }
    for name in dns_names {
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*' | ':'));
        if !valid {
            return Err(TlsError::InvalidName {
                what: "DNS name",
                name: name.clone(),
                reason: "must be a non-empty ASCII host name (letters, digits, '-', '.', '*')"
                    .into(),
            });
        }
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| {
        TlsError::Csr {
            reason: format!("key generation failed: {e}"),
        }
    })?;
    let mut params =
        rcgen::CertificateParams::new(dns_names.to_vec()).map_err(|e| TlsError::InvalidName {
            what: "DNS name",
            name: dns_names.join(", "),
            reason: e.to_string(),
        })?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, cn);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| TlsError::Csr {
            reason: e.to_string(),
        })?;
    Ok((key.serialize_pem(), csr))
}

/// Parse an uploaded certificate chain PEM (leaf first) and check that its leaf matches
/// `private_key_pem` (PKCS#8, SEC1 or PKCS#1) and that the key is usable by rustls; returns a
/// summary of the leaf.
pub fn check_certificate(
    cert_chain_pem: &str,
    private_key_pem: &str,
) -> Result<CertificateSummary, TlsError> {
    let what = "certificate chain";
    let chain = parse_pem_certificates(cert_chain_pem, what)?;
    let leaf = check_chain_and_key(&chain, private_key_pem, what)?;
    // The key must also be loadable by the ring provider, or client_config would fail later.
    let key = parse_private_key(private_key_pem, "private key")?;
    provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::InvalidPrivateKey {
            what: "private key",
            reason: format!("not usable for TLS client authentication: {e}"),
        })?;
    summarize(&leaf, &chain[0], what)
}

/// The summary of a stored certificate chain's leaf (checked against its key at upload), read
/// without the key: e.g. its `notAfter` for the expiry warnings.
pub fn leaf_summary(cert_chain_pem: &str) -> Result<CertificateSummary, TlsError> {
    let what = "certificate chain";
    let chain = parse_pem_certificates(cert_chain_pem, what)?;
    let der = chain.first().ok_or(TlsError::NoCertificate { what })?;
    let leaf = X509::from_der(der).map_err(|e| TlsError::InvalidCertificate {
        what,
        index: 1,
        reason: format!("not a valid X.509 certificate: {e}"),
    })?;
    summarize(&leaf, der, what)
}

fn summarize(
    leaf: &X509,
    der: &CertificateDer<'_>,
    what: &'static str,
) -> Result<CertificateSummary, TlsError> {
    let invalid = |reason: String| TlsError::InvalidCertificate {
        what,
        index: 1,
        reason,
    };
    Ok(CertificateSummary {
        subject: name_to_string(leaf.subject_name()),
        issuer: name_to_string(leaf.issuer_name()),
        not_before: asn1_to_unix(leaf.not_before()).map_err(invalid)?,
        not_after: asn1_to_unix(leaf.not_after()).map_err(invalid)?,
        sha256_fingerprint: hex::encode(Sha256::digest(der.as_ref())),
    })
}

/// Parse PEM CA certificates (for validating an endpoint's `trusted_issuers` at creation).
///
/// Each certificate must parse as X.509 and be usable as a trust anchor. The error names the
/// problem (not PEM, no certificate found, a private key or other block where certificates are
/// expected, an invalid certificate).
pub fn parse_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let what = "trusted issuers";
    let certs = parse_pem_certificates(pem, what)?;
    let mut store = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store
            .add(cert.clone())
            .map_err(|e| TlsError::InvalidCertificate {
                what,
                index: i + 1,
                reason: format!("not usable as a trust anchor: {e}"),
            })?;
    }
    Ok(certs)
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn root_store(pem: &str, what: &'static str) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for (i, cert) in parse_pem_certificates(pem, what)?.into_iter().enumerate() {
        store.add(cert).map_err(|e| TlsError::InvalidCertificate {
            what,
            index: i + 1,
            reason: format!("not usable as a trust anchor: {e}"),
        })?;
    }
    Ok(store)
}

/// All CERTIFICATE blocks of `pem`, each checked to parse as X.509. Any other block is an error.
fn parse_pem_certificates(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    if !pem.contains("-----BEGIN ") {
        return Err(TlsError::NotPem { what });
    }
    let mut certs = Vec::new();
    for (i, section) in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem.as_bytes()).enumerate() {
        let index = i + 1;
        let (kind, der) = section.map_err(|e| TlsError::InvalidPem {
            what,
            reason: pem_error_message(&e),
        })?;
        match kind {
            SectionKind::Certificate => {
                X509::from_der(&der).map_err(|e| TlsError::InvalidCertificate {
                    what,
                    index,
                    reason: format!("not a valid X.509 certificate: {e}"),
                })?;
                certs.push(CertificateDer::from(der));
            }
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey => {
                return Err(TlsError::UnexpectedPemBlock {
                    what,
                    index,
                    found: "a private key".into(),
                });
            }
            other => {
                return Err(TlsError::UnexpectedPemBlock {
                    what,
                    index,
                    found: format!("{other:?}"),
                });
            }
        }
    }
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

/// PEM errors may quote a line of the input: keep only the kind of problem, as the input may
/// be (or contain) a private key.
fn pem_error_message(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => "a section is missing its END line".into(),
        Error::IllegalSectionStart { .. } => "malformed BEGIN line".into(),
        Error::Base64Decode(_) => "a section's body is not valid base64".into(),
        Error::NoItemsFound => "no PEM items found".into(),
        Error::SectionTooLarge => "a section is too large".into(),
        _ => "unreadable PEM".into(),
    }
}

fn parse_private_key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    if !pem.contains("-----BEGIN ") {
        return Err(TlsError::NotPem { what });
    }
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::InvalidPrivateKey {
        what,
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block found".into()
            }
            other => pem_error_message(&other),
        },
    })
}

/// Checks the chain order and that `key_pem` belongs to the leaf; returns the parsed leaf.
fn check_chain_and_key(
    chain: &[CertificateDer<'static>],
    key_pem: &str,
    what: &'static str,
) -> Result<X509, TlsError> {
    let parsed = chain
        .iter()
        .enumerate()
        .map(|(i, der)| {
            X509::from_der(der).map_err(|e| TlsError::InvalidCertificate {
                what,
                index: i + 1,
                reason: format!("not a valid X.509 certificate: {e}"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (i, pair) in parsed.windows(2).enumerate() {
        if pair[1].issued(&pair[0]) != X509VerifyResult::OK {
            return Err(TlsError::ChainOrder {
                what,
                index: i + 2,
                prev: i + 1,
                subject: name_to_string(pair[0].subject_name()),
                issuer: name_to_string(pair[1].subject_name()),
            });
        }
    }
    let Some(leaf) = parsed.into_iter().next() else {
        return Err(TlsError::NoCertificate { what });
    };
    if !key_pem.contains("-----BEGIN ") {
        return Err(TlsError::NotPem {
            what: "private key",
        });
    }
    let key = PKey::private_key_from_pem(key_pem.as_bytes()).map_err(|_| {
        TlsError::InvalidPrivateKey {
            what: "private key",
            reason: "unreadable (expected an unencrypted PKCS#8, SEC1 or PKCS#1 PEM key)".into(),
        }
    })?;
    let leaf_key = leaf
        .public_key()
        .map_err(|e| TlsError::InvalidCertificate {
            what,
            index: 1,
            reason: format!("cannot read the public key: {e}"),
        })?;
    if !leaf_key.public_eq(&key) {
        return Err(TlsError::KeyMismatch {
            subject: name_to_string(leaf.subject_name()),
        });
    }
    Ok(leaf)
}

/// `CN=..., O=...` in certificate order; unknown attributes by OID.
fn name_to_string(name: &X509NameRef) -> String {
    name.entries()
        .map(|entry| {
            let object = entry.object();
            let key = object
                .nid()
                .short_name()
                .map(str::to_owned)
                .unwrap_or_else(|_| object.to_string());
            let value = entry
                .data()
                .to_string()
                .unwrap_or_else(|_| hex::encode(entry.data().as_slice()));
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn asn1_to_unix(time: &Asn1TimeRef) -> Result<i64, String> {
    let epoch = Asn1Time::from_unix(0).map_err(|e| e.to_string())?;
    let diff = epoch
        .diff(time)
        .map_err(|e| format!("unreadable validity time: {e}"))?;
    Ok(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateSigningRequestParams, CertifiedIssuer,
        DnType, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData,
    };

    fn test_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    fn issue(ca: &CertifiedIssuer<'static, KeyPair>, cn: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["client.example".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, ca).unwrap();
        (format!("{}{}", cert.pem(), ca.pem()), key.serialize_pem())
    }

    #[test]
    fn client_config_public_roots() {
        let config = client_config(None, None).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(!config.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn client_config_with_issuers_and_identity() {
        let ca = test_ca("Tenant CA");
        let (chain, key) = issue(&ca, "client");
        let config = client_config(Some(&ca.pem()), Some((&chain, &key))).unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
        assert_eq!(config.alpn_protocols.len(), 2);
        let config = client_config(Some(&ca.pem()), None).unwrap();
        assert!(!config.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn client_config_rejects_bad_inputs() {
        let ca = test_ca("CA");
        let other = test_ca("Other");
        let (chain, _) = issue(&ca, "a");
        let (_, other_key) = issue(&other, "b");
        let err = client_config(Some("garbage"), None).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::NotPem {
                    what: "trusted issuers"
                }
            ),
            "{err}"
        );
        let err = client_config(None, Some((&chain, &other_key))).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        let err = client_config(None, Some((&chain, "nope"))).unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
    }

    #[test]
    fn generate_csr_parses_back() {
        let names = vec![
            "hooks.example.com".to_string(),
            "alt.example.com".to_string(),
        ];
        let (key_pem, csr_pem) = generate_csr("hooks.example.com", &names).unwrap();
        assert!(key_pem.contains("BEGIN PRIVATE KEY"));
        assert!(csr_pem.contains("BEGIN CERTIFICATE REQUEST"));
        let csr = CertificateSigningRequestParams::from_pem(&csr_pem).unwrap();
        assert_eq!(csr.params.subject_alt_names.len(), 2);
        let cn = csr
            .params
            .distinguished_name
            .get(&DnType::CommonName)
            .unwrap();
        assert_eq!(cn, &rcgen::DnValue::Utf8String("hooks.example.com".into()));
        let key = KeyPair::from_pem(&key_pem).unwrap();
        assert_eq!(key.der_bytes(), csr.public_key.der_bytes());

        let (_, csr_pem) = generate_csr("no-sans", &[]).unwrap();
        CertificateSigningRequestParams::from_pem(&csr_pem).unwrap();
    }

    #[test]
    fn generate_csr_rejects_bad_names() {
        let err = generate_csr("", &[]).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::InvalidName {
                    what: "common name",
                    ..
                }
            ),
            "{err}"
        );
        let err = generate_csr(&"x".repeat(65), &[]).unwrap_err();
        assert!(matches!(err, TlsError::InvalidName { .. }), "{err}");
        let err = generate_csr("ok", &["bad name".to_string()]).unwrap_err();
        assert!(err.to_string().contains("bad name"), "{err}");
    }

    #[test]
    fn check_certificate_of_signed_csr() {
        let ca = test_ca("Signing CA");
        let (key_pem, csr_pem) =
            generate_csr("client.example.com", &["client.example.com".to_string()]).unwrap();
        let csr = CertificateSigningRequestParams::from_pem(&csr_pem).unwrap();
        let cert = csr.signed_by(&ca).unwrap();
        let chain = format!("{}{}", cert.pem(), ca.pem());

        let summary = check_certificate(&chain, &key_pem).unwrap();
        assert_eq!(summary.subject, "CN=client.example.com");
        assert_eq!(summary.issuer, "CN=Signing CA");
        assert!(summary.not_before < summary.not_after);
        assert_eq!(
            summary.sha256_fingerprint,
            hex::encode(Sha256::digest(cert.der()))
        );
        assert_eq!(summary.sha256_fingerprint.len(), 64);
        // The leaf alone is fine too.
        check_certificate(&cert.pem(), &key_pem).unwrap();

        // The identity works in a client config.
        client_config(Some(&ca.pem()), Some((&chain, &key_pem))).unwrap();

        // A certificate for another key is rejected with a clear error.
        let (other_chain, _) = issue(&ca, "someone else");
        let err = check_certificate(&other_chain, &key_pem).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        assert!(err.to_string().contains("does not match"), "{err}");
        assert!(err.to_string().contains("someone else"), "{err}");

        // Wrong order.
        let reversed = format!("{}{}", ca.pem(), cert.pem());
        let err = check_certificate(&reversed, &key_pem).unwrap_err();
        assert!(matches!(err, TlsError::ChainOrder { .. }), "{err}");

        // Key given where the chain is expected: never echoed.
        let err = check_certificate(&key_pem, &key_pem).unwrap_err();
        assert!(matches!(err, TlsError::UnexpectedPemBlock { .. }), "{err}");
        assert!(!err.to_string().contains("BEGIN"), "{err}");
    }

    #[test]
    fn check_certificate_summary_times() {
        let ca = test_ca("Times CA");
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["t.example".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 2);
        params.not_after = rcgen::date_time_ymd(2030, 1, 2);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Org");
        params
            .distinguished_name
            .push(DnType::CommonName, "t.example");
        let cert = params.signed_by(&key, &ca).unwrap();
        let summary = check_certificate(&cert.pem(), &key.serialize_pem()).unwrap();
        assert_eq!(summary.not_before, 1_577_923_200);
        assert_eq!(summary.not_after, 1_893_542_400);
        assert!(
            summary.subject.contains("CN=t.example"),
            "{}",
            summary.subject
        );
        assert!(summary.subject.contains("O=Org"), "{}", summary.subject);
    }

    #[test]
    fn parse_certificates_errors() {
        let ca = test_ca("Parse CA");
        let two = format!("{}{}", ca.pem(), test_ca("Second").pem());
        assert_eq!(parse_certificates(&two).unwrap().len(), 2);

        let err = parse_certificates("hello").unwrap_err();
        assert!(matches!(err, TlsError::NotPem { .. }), "{err}");
        assert!(err.to_string().contains("not PEM"), "{err}");

        let err = parse_certificates("").unwrap_err();
        assert!(matches!(err, TlsError::NotPem { .. }), "{err}");

        let csr = generate_csr("x", &[]).unwrap().1;
        let err = parse_certificates(&csr).unwrap_err();
        assert!(
            matches!(err, TlsError::UnexpectedPemBlock { index: 1, .. }),
            "{err}"
        );

        let err =
            parse_certificates("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
                .unwrap_err();
        assert!(matches!(err, TlsError::InvalidPem { .. }), "{err}");

        let err =
            parse_certificates("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .unwrap_err();
        assert!(
            matches!(err, TlsError::InvalidCertificate { index: 1, .. }),
            "{err}"
        );

        let err = parse_certificates("-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap_err();
        assert!(matches!(err, TlsError::InvalidPem { .. }), "{err}");

        let err = parse_certificates("-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n").unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
    }
}
