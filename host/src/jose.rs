//! JOSE support for signed and encrypted webhook deliveries.
//!
//! * [`SigningKey`] holds a tenant's JWS signing key (RS256, PS256, ES256 or EdDSA) together
//!   with a self-signed X.509 certificate that is published in the JWK's `x5c`.
//! * [`jwks_document`] renders the `/.well-known/jwks.json` document.
//! * [`encrypt_compact`] encrypts a payload (often a JWS, for nested JWTs) to a receiver's
//!   certificate, public key or JWK.
//! * [`verify_with_jwks`] and [`decrypt_with_private_key`] are the receiving side, for tenants'
//!   receivers and for tests.
//!
//! Cryptography is josekit 0.10 on top of the system OpenSSL. No error message or `Debug`
//! output of this module contains private key material.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use josekit::jwe::{self, JweDecrypter, JweEncrypter, JweHeader};
use josekit::jwk::Jwk;
use josekit::jws::{self, JwsHeader, JwsSigner, JwsVerifier};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, BigNumContext, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Private, Public};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};
use openssl::x509::{X509, X509NameBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// RSA modulus size for newly generated RS256/PS256 keys.
const RSA_BITS: u32 = 2048;
/// Longest accepted certificate validity (100 years), to keep date arithmetic sane.
const MAX_VALIDITY_DAYS: u32 = 36_500;
/// Content encryption algorithms accepted by [`encrypt_compact`].
const SUPPORTED_ENCS: [&str; 5] = [
    "A128GCM",
    "A192GCM",
    "A256GCM",
    "A128CBC-HS256",
    "A256CBC-HS512",
];
/// Key management algorithms accepted by [`encrypt_compact`] (for error messages).
const SUPPORTED_JWE_ALGS: &str = "RSA-OAEP-256, RSA-OAEP, ECDH-ES, ECDH-ES+A128KW, ECDH-ES+A256KW";

/// Errors of the JOSE module. Messages name the offending input and the reason; they never
/// contain private key material.
#[derive(Debug, thiserror::Error)]
pub enum JoseError {
    /// A signing algorithm name that is not one of RS256, PS256, ES256, EdDSA.
    #[error("unsupported signing algorithm {value:?}: expected one of RS256, PS256, ES256, EdDSA")]
    UnsupportedSigningAlg {
        /// The name that was given.
        value: String,
    },
    /// Key generation failed in OpenSSL.
    #[error("cannot generate a {alg} key: {reason}")]
    KeyGeneration {
        /// Algorithm the key was for.
        alg: SigningAlg,
        /// Why it failed.
        reason: String,
    },
    /// Building the self-signed certificate failed.
    #[error("cannot create the self-signed certificate for subject {subject:?}: {reason}")]
    CertificateGeneration {
        /// The requested subject common name.
        subject: String,
        /// Why it failed.
        reason: String,
    },
    /// The private key PEM could not be parsed or does not suit the algorithm.
    #[error("invalid private key for {context}: {reason}")]
    InvalidPrivateKey {
        /// What the key was for (e.g. `signing key "kid"`).
        context: String,
        /// Why it was rejected (never contains key material).
        reason: String,
    },
    /// The certificate PEM could not be parsed or does not match the private key.
    #[error("invalid certificate for signing key {kid:?}: {reason}")]
    InvalidCertificate {
        /// Key id of the signing key.
        kid: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The extra header JSON is not a JSON object or contains invalid header parameters.
    #[error("invalid extra header: {reason}")]
    InvalidHeader {
        /// Why it was rejected.
        reason: String,
    },
    /// Producing the JWS failed.
    #[error("cannot sign with key {kid:?} ({alg}): {reason}")]
    Signing {
        /// Key id of the signing key.
        kid: String,
        /// Algorithm used.
        alg: SigningAlg,
        /// Why it failed.
        reason: String,
    },
    /// JWE `alg` is not supported.
    #[error("unsupported JWE alg {alg:?}: expected one of {SUPPORTED_JWE_ALGS}")]
    UnsupportedJweAlg {
        /// The `alg` that was given.
        alg: String,
    },
    /// JWE `enc` is not supported.
    #[error(
        "unsupported JWE enc {enc:?}: expected one of A128GCM, A192GCM, A256GCM, A128CBC-HS256, A256CBC-HS512"
    )]
    UnsupportedJweEnc {
        /// The `enc` that was given.
        enc: String,
    },
    /// The JWE recipient could not be parsed.
    #[error("invalid JWE recipient: {reason}")]
    InvalidRecipient {
        /// Why it was rejected.
        reason: String,
    },
    /// The JWE recipient key cannot be used with the requested `alg`.
    #[error("JWE recipient key does not suit alg {alg}: {reason}")]
    RecipientKeyMismatch {
        /// The requested `alg`.
        alg: String,
        /// Why it does not suit.
        reason: String,
    },
    /// Producing the JWE failed.
    #[error("cannot encrypt ({alg}, {enc}): {reason}")]
    Encryption {
        /// The requested `alg`.
        alg: String,
        /// The requested `enc`.
        enc: String,
        /// Why it failed.
        reason: String,
    },
    /// The JWKS document is malformed.
    #[error("invalid JWKS document: {reason}")]
    InvalidJwks {
        /// Why it was rejected.
        reason: String,
    },
    /// The compact token is malformed (wrong number of parts, bad base64, bad header...).
    #[error("malformed {kind} token: {reason}")]
    MalformedToken {
        /// `JWS` or `JWE`.
        kind: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// No key in the JWKS has the token's `kid`.
    #[error("no key with kid {kid:?} in the JWKS document")]
    UnknownKid {
        /// The `kid` of the token.
        kid: String,
    },
    /// Signature verification failed.
    #[error("JWS verification with key {kid:?} failed: {reason}")]
    Verification {
        /// The `kid` of the token.
        kid: String,
        /// Why it failed.
        reason: String,
    },
    /// Decryption failed.
    #[error("JWE decryption failed: {reason}")]
    Decryption {
        /// Why it failed.
        reason: String,
    },
}

/// JWS signing algorithms supported for webhook signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (2048-bit RSA key).
    #[serde(rename = "RS256")]
    Rs256,
    /// RSASSA-PSS with SHA-256 (2048-bit RSA key).
    #[serde(rename = "PS256")]
    Ps256,
    /// ECDSA with P-256 and SHA-256.
    #[serde(rename = "ES256")]
    Es256,
    /// EdDSA with Ed25519.
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl SigningAlg {
    /// All supported algorithms.
    pub const ALL: [SigningAlg; 4] = [Self::Rs256, Self::Ps256, Self::Es256, Self::EdDsa];

    /// The JOSE name (`RS256`, `PS256`, `ES256`, `EdDSA`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    fn key_description(self) -> &'static str {
        match self {
            Self::Rs256 | Self::Ps256 => "an RSA key of at least 2048 bits",
            Self::Es256 => "an EC P-256 key",
            Self::EdDsa => "an Ed25519 key",
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlg {
    type Err = JoseError;

    /// The JOSE names, and `Ed25519` (RFC 9864's fully specified name) for EdDSA.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "Ed25519" {
            return Ok(Self::EdDsa);
        }
        Self::ALL
            .into_iter()
            .find(|alg| alg.as_str() == s)
            .ok_or_else(|| JoseError::UnsupportedSigningAlg {
                value: s.to_owned(),
            })
    }
}

/// A JWS signing key with its self-signed certificate (published as `x5c`).
///
/// `Debug` output redacts the private key.
#[derive(Clone)]
pub struct SigningKey {
    /// Key id (`kid`), deterministic from the public key for generated keys.
    pub kid: String,
    /// Signing algorithm.
    pub alg: SigningAlg,
    /// Self-signed X.509 certificate of the public key, PEM.
    pub certificate_pem: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    private_key_pem: String,
    certificate_der: Vec<u8>,
    /// Public key parameters of the JWK (kty, n/e, crv/x/y).
    public_params: Map<String, Value>,
    key: PKey<Private>,
    signer: Arc<dyn JwsSigner>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .field(
                "certificate_sha256",
                &hex::encode(Sha256::digest(&self.certificate_der)),
            )
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl SigningKey {
    /// New key + self-signed X.509 certificate (CN = `subject`, valid `validity_days`) for x5c
    /// publication. RSA keys are 2048-bit, ES256 uses P-256, EdDSA uses Ed25519.
    pub fn generate(alg: SigningAlg, subject: &str, validity_days: u32) -> Result<Self, JoseError> {
        if subject.trim().is_empty() {
            return Err(JoseError::CertificateGeneration {
                subject: subject.to_owned(),
                reason: "the subject common name is empty".into(),
            });
        }
        if validity_days == 0 || validity_days > MAX_VALIDITY_DAYS {
            return Err(JoseError::CertificateGeneration {
                subject: subject.to_owned(),
                reason: format!(
                    "validity_days must be between 1 and {MAX_VALIDITY_DAYS}, got {validity_days}"
                ),
            });
        }
        let key = generate_key(alg)?;
        let cert = self_signed_certificate(&key, alg, subject, validity_days).map_err(|e| {
            JoseError::CertificateGeneration {
                subject: subject.to_owned(),
                reason: e.to_string(),
            }
        })?;
        let spki = key
            .public_key_to_der()
            .map_err(|e| JoseError::KeyGeneration {
                alg,
                reason: format!("cannot encode the public key: {e}"),
            })?;
        let kid = derive_kid(alg, &spki);
        let pem_bytes = key
            .private_key_to_pem_pkcs8()
            .map_err(|e| JoseError::KeyGeneration {
                alg,
                reason: format!("cannot encode the private key: {e}"),
            })?;
        let private_key_pem =
            String::from_utf8(pem_bytes).map_err(|_| JoseError::KeyGeneration {
                alg,
                reason: "OpenSSL produced a non-UTF-8 PEM".into(),
            })?;
        let certificate_pem = cert
            .to_pem()
            .ok()
            .and_then(|pem| String::from_utf8(pem).ok())
            .ok_or_else(|| JoseError::CertificateGeneration {
                subject: subject.to_owned(),
                reason: "cannot encode the certificate as PEM".into(),
            })?;
        Self::from_parts(kid, alg, &private_key_pem, certificate_pem, unix_now())
    }

    /// Rebuild from stored parts (kid, alg, private PEM, certificate PEM, created_at).
    ///
    /// Checks that the private key suits `alg` and that the certificate holds its public key.
    /// The private key may be PKCS#8, PKCS#1 (RSA) or SEC1 (EC) PEM; it is kept as PKCS#8.
    pub fn from_parts(
        kid: String,
        alg: SigningAlg,
        private_key_pem: &str,
        certificate_pem: String,
        created_at: i64,
    ) -> Result<Self, JoseError> {
        let context = || format!("signing key {kid:?} ({alg})");
        if kid.trim().is_empty() {
            return Err(JoseError::InvalidPrivateKey {
                context: context(),
                reason: "the kid is empty".into(),
            });
        }
        let key = PKey::private_key_from_pem(private_key_pem.as_bytes()).map_err(|_| {
            JoseError::InvalidPrivateKey {
                context: context(),
                reason: "not a PEM private key (expected PKCS#8, PKCS#1 or SEC1)".into(),
            }
        })?;
        check_key_suits(&key, alg).map_err(|reason| JoseError::InvalidPrivateKey {
            context: context(),
            reason,
        })?;
        let cert = X509::from_pem(certificate_pem.as_bytes()).map_err(|e| {
            JoseError::InvalidCertificate {
                kid: kid.clone(),
                reason: format!("not a PEM X.509 certificate: {e}"),
            }
        })?;
        let cert_key = cert
            .public_key()
            .map_err(|e| JoseError::InvalidCertificate {
                kid: kid.clone(),
                reason: format!("cannot read the certificate's public key: {e}"),
            })?;
        if !cert_key.public_eq(&key) {
            return Err(JoseError::InvalidCertificate {
                kid,
                reason: "the certificate's public key does not match the private key".into(),
            });
        }
        let certificate_der = cert.to_der().map_err(|e| JoseError::InvalidCertificate {
            kid: kid.clone(),
            reason: format!("cannot encode the certificate as DER: {e}"),
        })?;
        let public_params =
            public_jwk_params(&key).map_err(|reason| JoseError::InvalidPrivateKey {
                context: context(),
                reason,
            })?;
        let normalized_pem = key
            .private_key_to_pem_pkcs8()
            .ok()
            .and_then(|pem| String::from_utf8(pem).ok())
            .ok_or_else(|| JoseError::InvalidPrivateKey {
                context: context(),
                reason: "cannot re-encode the key as PKCS#8".into(),
            })?;
        let signer = build_signer(alg, &key).map_err(|reason| JoseError::InvalidPrivateKey {
            context: context(),
            reason,
        })?;
        Ok(Self {
            kid,
            alg,
            certificate_pem,
            created_at,
            private_key_pem: normalized_pem,
            certificate_der,
            public_params,
            key,
            signer,
        })
    }

    /// The private key as PKCS#8 PEM — only for persisting in the host's database.
    pub fn private_key_pem(&self) -> &str {
        &self.private_key_pem
    }

    /// DER of the self-signed certificate.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// Public JWK with kid, alg, use "sig", x5c [base64 DER cert], x5t#S256.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = self.public_params.clone();
        jwk.insert("kid".into(), Value::String(self.kid.clone()));
        jwk.insert("alg".into(), Value::String(self.alg.as_str().into()));
        jwk.insert("use".into(), Value::String("sig".into()));
        jwk.insert(
            "x5c".into(),
            Value::Array(vec![Value::String(STANDARD.encode(&self.certificate_der))]),
        );
        jwk.insert(
            "x5t#S256".into(),
            Value::String(URL_SAFE_NO_PAD.encode(Sha256::digest(&self.certificate_der))),
        );
        Value::Object(jwk)
    }

    /// Compact JWS of `payload`; protected header = `extra_header_json` (a JSON object string,
    /// may be `""` or `"{}"`) + `alg` + `kid` (alg/kid from the extra header are overridden).
    pub fn sign_compact(
        &self,
        extra_header_json: &str,
        payload: &[u8],
    ) -> Result<String, JoseError> {
        let mut map = parse_extra_header(extra_header_json)?;
        map.remove("alg");
        map.remove("kid");
        let mut header = JwsHeader::from_map(map).map_err(|e| JoseError::InvalidHeader {
            reason: e.to_string(),
        })?;
        header.set_key_id(self.kid.clone());
        let sign_err = |reason: String| JoseError::Signing {
            kid: self.kid.clone(),
            alg: self.alg,
            reason,
        };
        // `alg` is a public field: if it was changed after construction, build a matching signer.
        let rebuilt;
        let signer: &dyn JwsSigner = if self.signer.algorithm().name() == self.alg.as_str() {
            self.signer.as_ref()
        } else {
            check_key_suits(&self.key, self.alg).map_err(sign_err)?;
            rebuilt = build_signer(self.alg, &self.key).map_err(sign_err)?;
            rebuilt.as_ref()
        };
        jws::serialize_compact(payload, &header, signer).map_err(|e| sign_err(e.to_string()))
    }
}

/// `{"keys":[...]}` document for `/.well-known/jwks.json`.
pub fn jwks_document(keys: &[&SigningKey]) -> Value {
    serde_json::json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() })
}

/// JWE key management algorithms supported by [`encrypt_compact`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JweAlg {
    RsaOaep256,
    RsaOaep,
    EcdhEs,
    EcdhEsA128kw,
    EcdhEsA256kw,
}

impl JweAlg {
    fn parse(alg: &str) -> Result<Self, JoseError> {
        match alg {
            "RSA-OAEP-256" => Ok(Self::RsaOaep256),
            "RSA-OAEP" => Ok(Self::RsaOaep),
            "ECDH-ES" => Ok(Self::EcdhEs),
            "ECDH-ES+A128KW" => Ok(Self::EcdhEsA128kw),
            "ECDH-ES+A256KW" => Ok(Self::EcdhEsA256kw),
            other => Err(JoseError::UnsupportedJweAlg {
                alg: other.to_owned(),
            }),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::RsaOaep256 => "RSA-OAEP-256",
            Self::RsaOaep => "RSA-OAEP",
            Self::EcdhEs => "ECDH-ES",
            Self::EcdhEsA128kw => "ECDH-ES+A128KW",
            Self::EcdhEsA256kw => "ECDH-ES+A256KW",
        }
    }

    fn is_rsa(self) -> bool {
        matches!(self, Self::RsaOaep256 | Self::RsaOaep)
    }

    /// Checks that an OpenSSL key type suits this algorithm.
    fn check_key_id(self, id: Id) -> Result<(), String> {
        let ok = if self.is_rsa() {
            id == Id::RSA
        } else {
            id == Id::EC || id == Id::X25519 || id == Id::X448
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{} needs {}, but the key is {}",
                self.name(),
                self.key_description(),
                key_type_name(id)
            ))
        }
    }

    /// Checks that a JWK `kty` suits this algorithm.
    fn check_kty(self, kty: &str) -> Result<(), String> {
        let ok = if self.is_rsa() {
            kty == "RSA"
        } else {
            kty == "EC" || kty == "OKP"
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{} needs {}, but the JWK has kty {kty:?}",
                self.name(),
                self.key_description()
            ))
        }
    }

    fn key_description(self) -> &'static str {
        if self.is_rsa() {
            "an RSA key"
        } else {
            "an EC (P-256/P-384/P-521) or X25519/X448 key"
        }
    }

    fn encrypter_from_spki(self, spki: &[u8]) -> Result<Box<dyn JweEncrypter>, josekit::JoseError> {
        let encrypter: Box<dyn JweEncrypter> = match self {
            Self::RsaOaep256 => Box::new(jwe::RSA_OAEP_256.encrypter_from_der(spki)?),
            Self::RsaOaep => Box::new(jwe::RSA_OAEP.encrypter_from_der(spki)?),
            Self::EcdhEs => Box::new(jwe::ECDH_ES.encrypter_from_der(spki)?),
            Self::EcdhEsA128kw => Box::new(jwe::ECDH_ES_A128KW.encrypter_from_der(spki)?),
            Self::EcdhEsA256kw => Box::new(jwe::ECDH_ES_A256KW.encrypter_from_der(spki)?),
        };
        Ok(encrypter)
    }

    fn encrypter_from_jwk(self, jwk: &Jwk) -> Result<Box<dyn JweEncrypter>, josekit::JoseError> {
        let encrypter: Box<dyn JweEncrypter> = match self {
            Self::RsaOaep256 => Box::new(jwe::RSA_OAEP_256.encrypter_from_jwk(jwk)?),
            Self::RsaOaep => Box::new(jwe::RSA_OAEP.encrypter_from_jwk(jwk)?),
            Self::EcdhEs => Box::new(jwe::ECDH_ES.encrypter_from_jwk(jwk)?),
            Self::EcdhEsA128kw => Box::new(jwe::ECDH_ES_A128KW.encrypter_from_jwk(jwk)?),
            Self::EcdhEsA256kw => Box::new(jwe::ECDH_ES_A256KW.encrypter_from_jwk(jwk)?),
        };
        Ok(encrypter)
    }

    /// `der` is PKCS#1 for RSA keys and PKCS#8 for the others.
    fn decrypter_from_der(self, der: &[u8]) -> Result<Box<dyn JweDecrypter>, josekit::JoseError> {
        let decrypter: Box<dyn JweDecrypter> = match self {
            Self::RsaOaep256 => Box::new(jwe::RSA_OAEP_256.decrypter_from_der(der)?),
            Self::RsaOaep => Box::new(jwe::RSA_OAEP.decrypter_from_der(der)?),
            Self::EcdhEs => Box::new(jwe::ECDH_ES.decrypter_from_der(der)?),
            Self::EcdhEsA128kw => Box::new(jwe::ECDH_ES_A128KW.decrypter_from_der(der)?),
            Self::EcdhEsA256kw => Box::new(jwe::ECDH_ES_A256KW.decrypter_from_der(der)?),
        };
        Ok(decrypter)
    }
}

/// Compact JWE of `payload` encrypted to `recipient` = a PEM certificate, a PEM public key
/// (SPKI or PKCS#1 RSA), or a JWK JSON object string.
///
/// `alg`: RSA-OAEP-256, RSA-OAEP, ECDH-ES, ECDH-ES+A128KW, ECDH-ES+A256KW; `enc`: A128GCM,
/// A192GCM, A256GCM, A128CBC-HS256, A256CBC-HS512. `extra_header_json` is a JSON object string
/// (may be `""`), e.g. `{"cty":"JWT"}`; its `alg`/`enc` are overridden. Errors say which of
/// alg/enc/recipient is wrong and why.
pub fn encrypt_compact(
    alg: &str,
    enc: &str,
    recipient: &str,
    extra_header_json: &str,
    payload: &[u8],
) -> Result<String, JoseError> {
    let jwe_alg = JweAlg::parse(alg)?;
    if !SUPPORTED_ENCS.contains(&enc) {
        return Err(JoseError::UnsupportedJweEnc {
            enc: enc.to_owned(),
        });
    }
    let mut map = parse_extra_header(extra_header_json)?;
    map.remove("alg");
    map.remove("enc");
    let mut header = JweHeader::from_map(map).map_err(|e| JoseError::InvalidHeader {
        reason: e.to_string(),
    })?;
    header.set_content_encryption(enc);

    // Parsing the recipient (PEM → SPKI → encrypter) was half of the CPU of a jws+jwe delivery
    // (cargo bench --bench engine, perf): prepared encrypters are kept per (alg, recipient).
    let cache_key = (
        alg.to_owned(),
        Sha256::digest(recipient.as_bytes()).to_vec(),
    );
    let cached = ENCRYPTERS
        .lock()
        .ok()
        .and_then(|cache| cache.get(&cache_key).cloned());
    let encrypter: Arc<dyn JweEncrypter> = match cached {
        Some(encrypter) => encrypter,
        None => {
            let prepared: Arc<dyn JweEncrypter> =
                Arc::from(prepare_encrypter(jwe_alg, alg, recipient)?);
            if let Ok(mut cache) = ENCRYPTERS.lock() {
                if cache.len() >= MAX_CACHED_ENCRYPTERS {
                    cache.clear();
                }
                cache.insert(cache_key, prepared.clone());
            }
            prepared
        }
    };
    jwe::serialize_compact(payload, &header, encrypter.as_ref()).map_err(|e| {
        JoseError::Encryption {
            alg: alg.to_owned(),
            enc: enc.to_owned(),
            reason: e.to_string(),
        }
    })
}

/// Prepared encrypters by (alg, SHA-256 of the recipient text).
type EncrypterCache = HashMap<(String, Vec<u8>), Arc<dyn JweEncrypter>>;

/// The cache of prepared encrypters; cleared when full.
static ENCRYPTERS: LazyLock<Mutex<EncrypterCache>> = LazyLock::new(Default::default);
const MAX_CACHED_ENCRYPTERS: usize = 1024;

/// Parses `recipient` and makes the encrypter for `jwe_alg`.
fn prepare_encrypter(
    jwe_alg: JweAlg,
    alg: &str,
    recipient: &str,
) -> Result<Box<dyn JweEncrypter>, JoseError> {
    let mismatch = |reason: String| JoseError::RecipientKeyMismatch {
        alg: alg.to_owned(),
        reason,
    };
    let encrypter = match parse_recipient(recipient)? {
        Recipient::Jwk(jwk) => {
            jwe_alg.check_kty(jwk.key_type()).map_err(mismatch)?;
            jwe_alg
                .encrypter_from_jwk(&jwk)
                .map_err(|e| mismatch(e.to_string()))?
        }
        Recipient::Key { key, source } => {
            jwe_alg
                .check_key_id(key.id())
                .map_err(|reason| mismatch(format!("{reason} (from the {source})")))?;
            let spki = key
                .public_key_to_der()
                .map_err(|e| JoseError::InvalidRecipient {
                    reason: format!("cannot encode the {source}'s public key: {e}"),
                })?;
            jwe_alg
                .encrypter_from_spki(&spki)
                .map_err(|e| mismatch(e.to_string()))?
        }
    };
    Ok(encrypter)
}

/// Verify a compact JWS against a JWKS document (key selected by the token's `kid`; RS256,
/// PS256, ES256 and EdDSA). Returns the payload bytes and the protected header as JSON.
///
/// For tenants' receivers and tests.
pub fn verify_with_jwks(jwks_json: &str, token: &str) -> Result<(Vec<u8>, Value), JoseError> {
    let jwks: Value = serde_json::from_str(jwks_json).map_err(|e| JoseError::InvalidJwks {
        reason: format!("not JSON: {e}"),
    })?;
    let keys =
        jwks.get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JoseError::InvalidJwks {
                reason: "no \"keys\" array".into(),
            })?;

    let malformed = |reason: String| JoseError::MalformedToken {
        kind: "JWS",
        reason,
    };
    let token = token.trim();
    let header = decode_protected_header(token, 3).map_err(malformed)?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("the header has no string \"alg\"".into()))?;
    let alg = SigningAlg::from_str(alg_name)
        .map_err(|_| malformed(format!("unsupported alg {alg_name:?} in the header")))?;
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("the header has no string \"kid\"".into()))?
        .to_owned();

    let candidates: Vec<&Map<String, Value>> = keys
        .iter()
        .filter_map(Value::as_object)
        .filter(|k| k.get("kid").and_then(Value::as_str) == Some(kid.as_str()))
        .collect();
    if candidates.is_empty() {
        return Err(JoseError::UnknownKid { kid });
    }
    let verification = |reason: String| JoseError::Verification {
        kid: kid.clone(),
        reason,
    };
    let jwk_map = candidates
        .iter()
        .find(|k| {
            k.get("alg")
                .and_then(Value::as_str)
                .is_none_or(|a| a == alg.as_str())
        })
        .ok_or_else(|| {
            verification(format!(
                "the token's alg {alg} does not match the alg of the JWKS key"
            ))
        })?;
    let jwk =
        Jwk::from_map((*jwk_map).clone()).map_err(|e| verification(format!("invalid JWK: {e}")))?;
    let verifier: Box<dyn JwsVerifier> = match alg {
        SigningAlg::Rs256 => jws::RS256
            .verifier_from_jwk(&jwk)
            .map(|v| Box::new(v) as Box<dyn JwsVerifier>),
        SigningAlg::Ps256 => jws::PS256
            .verifier_from_jwk(&jwk)
            .map(|v| Box::new(v) as Box<dyn JwsVerifier>),
        SigningAlg::Es256 => jws::ES256
            .verifier_from_jwk(&jwk)
            .map(|v| Box::new(v) as Box<dyn JwsVerifier>),
        SigningAlg::EdDsa => jws::EdDSA
            .verifier_from_jwk(&jwk)
            .map(|v| Box::new(v) as Box<dyn JwsVerifier>),
    }
    .map_err(|e| verification(format!("the JWK cannot verify {alg}: {e}")))?;
    let (payload, header) = jws::deserialize_compact(token, verifier.as_ref())
        .map_err(|e| verification(e.to_string()))?;
    Ok((payload, Value::Object(header.claims_set().clone())))
}

/// Decrypt a compact JWE with a PEM private key (RSA or EC; PKCS#8, PKCS#1 or SEC1).
/// Returns the payload and the protected header as JSON.
///
/// For tenants' receivers and tests.
pub fn decrypt_with_private_key(
    private_key_pem: &str,
    token: &str,
) -> Result<(Vec<u8>, Value), JoseError> {
    let key = PKey::private_key_from_pem(private_key_pem.as_bytes()).map_err(|_| {
        JoseError::InvalidPrivateKey {
            context: "JWE decryption".into(),
            reason: "not a PEM private key (expected PKCS#8, PKCS#1 or SEC1)".into(),
        }
    })?;
    let malformed = |reason: String| JoseError::MalformedToken {
        kind: "JWE",
        reason,
    };
    let token = token.trim();
    let header = decode_protected_header(token, 5).map_err(malformed)?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("the header has no string \"alg\"".into()))?;
    let alg = JweAlg::parse(alg_name)
        .map_err(|_| malformed(format!("unsupported alg {alg_name:?} in the header")))?;
    let decryption = |reason: String| JoseError::Decryption { reason };
    alg.check_key_id(key.id()).map_err(|reason| {
        decryption(format!("the private key does not suit the token: {reason}"))
    })?;
    let der = if key.id() == Id::RSA {
        key.rsa().and_then(|rsa| rsa.private_key_to_der())
    } else {
        key.private_key_to_pkcs8()
    }
    .map_err(|_| decryption("cannot re-encode the private key".into()))?;
    let decrypter = alg
        .decrypter_from_der(&der)
        .map_err(|e| decryption(format!("unusable private key for {}: {e}", alg.name())))?;
    let (payload, header) = jwe::deserialize_compact(token, decrypter.as_ref())
        .map_err(|e| decryption(e.to_string()))?;
    Ok((payload, Value::Object(header.claims_set().clone())))
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `<alg lowercase>-<base64url of the first 12 bytes of SHA-256(SPKI DER)>`.
fn derive_kid(alg: SigningAlg, spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    format!(
        "{}-{}",
        alg.as_str().to_ascii_lowercase(),
        URL_SAFE_NO_PAD.encode(&digest[..12])
    )
}

fn generate_key(alg: SigningAlg) -> Result<PKey<Private>, JoseError> {
    let err = |e: openssl::error::ErrorStack| JoseError::KeyGeneration {
        alg,
        reason: e.to_string(),
    };
    match alg {
        SigningAlg::Rs256 | SigningAlg::Ps256 => Rsa::generate(RSA_BITS)
            .and_then(PKey::from_rsa)
            .map_err(err),
        SigningAlg::Es256 => EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)
            .and_then(|group| EcKey::generate(&group))
            .and_then(PKey::from_ec_key)
            .map_err(err),
        SigningAlg::EdDsa => PKey::generate_ed25519().map_err(err),
    }
}

fn self_signed_certificate(
    key: &PKeyRef<Private>,
    alg: SigningAlg,
    subject: &str,
    validity_days: u32,
) -> Result<X509, openssl::error::ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, subject)?;
    let name = name.build();

    let mut builder = X509::builder()?;
    builder.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    builder.set_serial_number(&serial)?;
    builder.set_subject_name(&name)?;
    builder.set_issuer_name(&name)?;
    let not_before = Asn1Time::days_from_now(0)?;
    let not_after = Asn1Time::days_from_now(validity_days)?;
    builder.set_not_before(&not_before)?;
    builder.set_not_after(&not_after)?;
    builder.set_pubkey(key)?;
    builder.append_extension(BasicConstraints::new().critical().build()?)?;
    builder.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    let ski = SubjectKeyIdentifier::new().build(&builder.x509v3_context(None, None))?;
    builder.append_extension(ski)?;
    let digest = match alg {
        SigningAlg::EdDsa => MessageDigest::null(),
        _ => MessageDigest::sha256(),
    };
    builder.sign(key, digest)?;
    Ok(builder.build())
}

fn key_type_name(id: Id) -> &'static str {
    match id {
        Id::RSA => "an RSA key",
        Id::RSA_PSS => "an RSA-PSS key",
        Id::EC => "an EC key",
        Id::ED25519 => "an Ed25519 key",
        Id::ED448 => "an Ed448 key",
        Id::X25519 => "an X25519 key",
        Id::X448 => "an X448 key",
        Id::DSA => "a DSA key",
        _ => "a key of an unsupported type",
    }
}

/// Checks that `key` can be used for `alg`; the error says what is needed and what was found.
fn check_key_suits(key: &PKeyRef<Private>, alg: SigningAlg) -> Result<(), String> {
    let ok = match alg {
        SigningAlg::Rs256 | SigningAlg::Ps256 => key.id() == Id::RSA && key.bits() >= 2048,
        SigningAlg::Es256 => {
            key.id() == Id::EC
                && key
                    .ec_key()
                    .ok()
                    .and_then(|ec| ec.group().curve_name())
                    .is_some_and(|nid| nid == Nid::X9_62_PRIME256V1)
        }
        SigningAlg::EdDsa => key.id() == Id::ED25519,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{alg} needs {}, but the key is {} ({} bits)",
            alg.key_description(),
            key_type_name(key.id()),
            key.bits()
        ))
    }
}

fn build_signer(alg: SigningAlg, key: &PKeyRef<Private>) -> Result<Arc<dyn JwsSigner>, String> {
    let encode_err = |_| "cannot re-encode the private key".to_string();
    let rsa_der = || {
        key.rsa()
            .and_then(|rsa| rsa.private_key_to_der())
            .map_err(encode_err)
    };
    let pkcs8_der = || key.private_key_to_pkcs8().map_err(encode_err);
    let signer: Arc<dyn JwsSigner> = match alg {
        SigningAlg::Rs256 => Arc::new(jws::RS256.signer_from_der(rsa_der()?).map_err(jose_msg)?),
        SigningAlg::Ps256 => Arc::new(jws::PS256.signer_from_der(rsa_der()?).map_err(jose_msg)?),
        SigningAlg::Es256 => Arc::new(jws::ES256.signer_from_der(pkcs8_der()?).map_err(jose_msg)?),
        SigningAlg::EdDsa => Arc::new(jws::EdDSA.signer_from_der(pkcs8_der()?).map_err(jose_msg)?),
    };
    Ok(signer)
}

fn jose_msg(e: josekit::JoseError) -> String {
    e.to_string()
}

/// The public part of a JWK (`kty` and key parameters).
fn public_jwk_params(key: &PKeyRef<Private>) -> Result<Map<String, Value>, String> {
    let b64 = |bytes: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(bytes));
    let mut map = Map::new();
    match key.id() {
        Id::RSA => {
            let rsa = key.rsa().map_err(|e| e.to_string())?;
            map.insert("kty".into(), Value::String("RSA".into()));
            map.insert("n".into(), b64(&rsa.n().to_vec()));
            map.insert("e".into(), b64(&rsa.e().to_vec()));
        }
        Id::EC => {
            let ec = key.ec_key().map_err(|e| e.to_string())?;
            let group = ec.group();
            if group.curve_name() != Some(Nid::X9_62_PRIME256V1) {
                return Err("only P-256 EC keys are supported".into());
            }
            let mut ctx = BigNumContext::new().map_err(|e| e.to_string())?;
            let mut x = BigNum::new().map_err(|e| e.to_string())?;
            let mut y = BigNum::new().map_err(|e| e.to_string())?;
            ec.public_key()
                .affine_coordinates(group, &mut x, &mut y, &mut ctx)
                .map_err(|e| e.to_string())?;
            map.insert("kty".into(), Value::String("EC".into()));
            map.insert("crv".into(), Value::String("P-256".into()));
            map.insert(
                "x".into(),
                b64(&x.to_vec_padded(32).map_err(|e| e.to_string())?),
            );
            map.insert(
                "y".into(),
                b64(&y.to_vec_padded(32).map_err(|e| e.to_string())?),
            );
        }
        Id::ED25519 => {
            let raw = key.raw_public_key().map_err(|e| e.to_string())?;
            map.insert("kty".into(), Value::String("OKP".into()));
            map.insert("crv".into(), Value::String("Ed25519".into()));
            map.insert("x".into(), b64(&raw));
        }
        other => return Err(format!("unsupported key type: {}", key_type_name(other))),
    }
    Ok(map)
}

fn parse_extra_header(extra_header_json: &str) -> Result<Map<String, Value>, JoseError> {
    let trimmed = extra_header_json.trim();
    if trimmed.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(JoseError::InvalidHeader {
            reason: "not a JSON object".into(),
        }),
        Err(e) => Err(JoseError::InvalidHeader {
            reason: format!("not valid JSON: {e}"),
        }),
    }
}

/// Decodes the protected header of a compact token that must have `parts` parts.
fn decode_protected_header(token: &str, parts: usize) -> Result<Map<String, Value>, String> {
    let count = token.split('.').count();
    if count != parts {
        return Err(format!(
            "compact serialization has {parts} dot-separated parts, found {count}"
        ));
    }
    let first = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(first)
        .map_err(|e| format!("the protected header is not base64url: {e}"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the protected header is not a JSON object".into()),
        Err(e) => Err(format!("the protected header is not JSON: {e}")),
    }
}

enum Recipient {
    Jwk(Jwk),
    Key {
        key: PKey<Public>,
        source: &'static str,
    },
}

fn parse_recipient(recipient: &str) -> Result<Recipient, JoseError> {
    let invalid = |reason: String| JoseError::InvalidRecipient { reason };
    let trimmed = recipient.trim();
    if trimmed.is_empty() {
        return Err(invalid("the recipient is empty".into()));
    }
    if trimmed.starts_with('{') {
        let map: Map<String, Value> = serde_json::from_str(trimmed).map_err(|e| {
            invalid(format!(
                "the recipient looks like a JWK but is not a JSON object: {e}"
            ))
        })?;
        if map.contains_key("d") {
            return Err(invalid(
                "the recipient JWK contains a private key; give the receiver's public JWK".into(),
            ));
        }
        let jwk = Jwk::from_map(map).map_err(|e| invalid(format!("invalid JWK: {e}")))?;
        return Ok(Recipient::Jwk(jwk));
    }
    let Some(label) = first_pem_label(trimmed) else {
        return Err(invalid(
            "neither a PEM certificate, a PEM public key, nor a JWK JSON object".into(),
        ));
    };
    match label {
        "CERTIFICATE" => {
            let cert = X509::from_pem(trimmed.as_bytes())
                .map_err(|e| invalid(format!("unreadable PEM certificate: {e}")))?;
            let key = cert
                .public_key()
                .map_err(|e| invalid(format!("cannot read the certificate's public key: {e}")))?;
            Ok(Recipient::Key {
                key,
                source: "certificate",
            })
        }
        "PUBLIC KEY" => {
            let key = PKey::public_key_from_pem(trimmed.as_bytes())
                .map_err(|e| invalid(format!("unreadable PEM public key: {e}")))?;
            Ok(Recipient::Key {
                key,
                source: "public key",
            })
        }
        "RSA PUBLIC KEY" => {
            let key = Rsa::public_key_from_pem_pkcs1(trimmed.as_bytes())
                .and_then(PKey::from_rsa)
                .map_err(|e| invalid(format!("unreadable PEM RSA public key: {e}")))?;
            Ok(Recipient::Key {
                key,
                source: "RSA public key",
            })
        }
        l if l.contains("PRIVATE KEY") => Err(invalid(
            "the recipient is a private key; give the receiver's certificate or public key".into(),
        )),
        other => Err(invalid(format!(
            "PEM block {other:?} is neither CERTIFICATE nor PUBLIC KEY"
        ))),
    }
}

/// The label of the first `-----BEGIN <label>-----` line, if any.
fn first_pem_label(pem: &str) -> Option<&str> {
    let start = pem.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &pem[start..];
    let end = rest.find("-----")?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwks_of(keys: &[&SigningKey]) -> String {
        jwks_document(keys).to_string()
    }

    #[test]
    fn alg_names_round_trip() {
        for alg in SigningAlg::ALL {
            assert_eq!(alg.to_string().parse::<SigningAlg>().unwrap(), alg);
            let json = serde_json::to_string(&alg).unwrap();
            assert_eq!(json, format!("\"{alg}\""));
            assert_eq!(serde_json::from_str::<SigningAlg>(&json).unwrap(), alg);
        }
        let err = "HS256".parse::<SigningAlg>().unwrap_err();
        assert!(err.to_string().contains("HS256"), "{err}");
        assert!("eddsa".parse::<SigningAlg>().is_err());
    }

    #[test]
    fn sign_verify_round_trip_all_algs() {
        for alg in SigningAlg::ALL {
            let key = SigningKey::generate(alg, "wasmhook test signer", 30).unwrap();
            assert!(key.kid.starts_with(&alg.as_str().to_ascii_lowercase()));
            let jwk = key.public_jwk();
            assert_eq!(jwk["alg"], alg.as_str());
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["kid"], key.kid.as_str());
            assert!(jwk.get("d").is_none(), "public JWK leaks private part");
            let x5c = STANDARD.decode(jwk["x5c"][0].as_str().unwrap()).unwrap();
            assert_eq!(x5c, key.certificate_der());
            let cert = X509::from_der(&x5c).unwrap();
            let cn = cert
                .subject_name()
                .entries_by_nid(Nid::COMMONNAME)
                .next()
                .unwrap();
            assert_eq!(cn.data().to_string().unwrap(), "wasmhook test signer");
            assert_eq!(
                jwk["x5t#S256"].as_str().unwrap(),
                URL_SAFE_NO_PAD.encode(Sha256::digest(&x5c))
            );

            let token = key
                .sign_compact(
                    r#"{"typ":"JWT","alg":"none","kid":"evil","x-hook":1}"#,
                    b"{\"a\":1}",
                )
                .unwrap();
            let (payload, header) = verify_with_jwks(&jwks_of(&[&key]), &token).unwrap();
            assert_eq!(payload, b"{\"a\":1}");
            assert_eq!(header["alg"], alg.as_str());
            assert_eq!(header["kid"], key.kid.as_str());
            assert_eq!(header["typ"], "JWT");
            assert_eq!(header["x-hook"], 1);

            for extra in ["", "{}", "  "] {
                let token = key.sign_compact(extra, b"x").unwrap();
                assert_eq!(verify_with_jwks(&jwks_of(&[&key]), &token).unwrap().0, b"x");
            }
        }
    }

    #[test]
    fn key_selection_among_several() {
        let a = SigningKey::generate(SigningAlg::Es256, "a", 1).unwrap();
        let b = SigningKey::generate(SigningAlg::EdDsa, "b", 1).unwrap();
        let jwks = jwks_of(&[&a, &b]);
        for key in [&a, &b] {
            let token = key.sign_compact("", b"p").unwrap();
            assert_eq!(verify_with_jwks(&jwks, &token).unwrap().0, b"p");
        }
    }

    #[test]
    fn tampered_token_rejected() {
        for alg in SigningAlg::ALL {
            let key = SigningKey::generate(alg, "t", 1).unwrap();
            let token = key.sign_compact("", b"hello world").unwrap();
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            parts[1] = URL_SAFE_NO_PAD.encode(b"hello w0rld");
            let tampered = parts.join(".");
            let err = verify_with_jwks(&jwks_of(&[&key]), &tampered).unwrap_err();
            assert!(
                matches!(err, JoseError::Verification { .. }),
                "{alg}: {err}"
            );
        }
    }

    #[test]
    fn wrong_kid_rejected() {
        let signer = SigningKey::generate(SigningAlg::Es256, "signer", 1).unwrap();
        let other = SigningKey::generate(SigningAlg::Es256, "other", 1).unwrap();
        let token = signer.sign_compact("", b"x").unwrap();
        let err = verify_with_jwks(&jwks_of(&[&other]), &token).unwrap_err();
        assert!(
            matches!(&err, JoseError::UnknownKid { kid } if *kid == signer.kid),
            "{err}"
        );

        // Same kid but a different key: signature check fails.
        let mut impostor = other.clone();
        impostor.kid = signer.kid.clone();
        let err = verify_with_jwks(&jwks_of(&[&impostor]), &token).unwrap_err();
        assert!(matches!(err, JoseError::Verification { .. }), "{err}");
    }

    #[test]
    fn alg_confusion_rejected() {
        // An RS256 key published in the JWKS cannot verify a token claiming PS256.
        let rs = SigningKey::generate(SigningAlg::Rs256, "rs", 1).unwrap();
        let mut ps = rs.clone();
        ps.alg = SigningAlg::Ps256;
        let token = ps.sign_compact("", b"x").unwrap();
        let err = verify_with_jwks(&jwks_of(&[&rs]), &token).unwrap_err();
        assert!(err.to_string().contains("alg"), "{err}");
    }

    #[test]
    fn malformed_inputs_rejected() {
        let key = SigningKey::generate(SigningAlg::EdDsa, "m", 1).unwrap();
        let jwks = jwks_of(&[&key]);
        assert!(matches!(
            verify_with_jwks(&jwks, "a.b").unwrap_err(),
            JoseError::MalformedToken { .. }
        ));
        assert!(matches!(
            verify_with_jwks("{", "a.b.c").unwrap_err(),
            JoseError::InvalidJwks { .. }
        ));
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"x"}"#),
            URL_SAFE_NO_PAD.encode(b"x")
        );
        let err = verify_with_jwks(&jwks, &none).unwrap_err();
        assert!(err.to_string().contains("none"), "{err}");
        let err = key.sign_compact("[1]", b"x").unwrap_err();
        assert!(matches!(err, JoseError::InvalidHeader { .. }), "{err}");
        let err = key.sign_compact("{", b"x").unwrap_err();
        assert!(matches!(err, JoseError::InvalidHeader { .. }), "{err}");
    }

    #[test]
    fn from_parts_round_trip() {
        for alg in SigningAlg::ALL {
            let key = SigningKey::generate(alg, "parts", 10).unwrap();
            let rebuilt = SigningKey::from_parts(
                key.kid.clone(),
                key.alg,
                key.private_key_pem(),
                key.certificate_pem.clone(),
                key.created_at,
            )
            .unwrap();
            assert_eq!(rebuilt.private_key_pem(), key.private_key_pem());
            assert_eq!(rebuilt.public_jwk(), key.public_jwk());
            assert_eq!(rebuilt.created_at, key.created_at);
            let token = rebuilt.sign_compact("", b"r").unwrap();
            assert_eq!(verify_with_jwks(&jwks_of(&[&key]), &token).unwrap().0, b"r");
        }
    }

    #[test]
    fn from_parts_rejects_mismatches() {
        let es = SigningKey::generate(SigningAlg::Es256, "es", 1).unwrap();
        let ed = SigningKey::generate(SigningAlg::EdDsa, "ed", 1).unwrap();
        // Wrong algorithm for the key.
        let err = SigningKey::from_parts(
            "k".into(),
            SigningAlg::Rs256,
            es.private_key_pem(),
            es.certificate_pem.clone(),
            0,
        )
        .unwrap_err();
        assert!(matches!(err, JoseError::InvalidPrivateKey { .. }), "{err}");
        assert!(err.to_string().contains("RSA"), "{err}");
        // Certificate of another key.
        let err = SigningKey::from_parts(
            "k".into(),
            SigningAlg::Es256,
            es.private_key_pem(),
            ed.certificate_pem.clone(),
            0,
        )
        .unwrap_err();
        assert!(matches!(err, JoseError::InvalidCertificate { .. }), "{err}");
        // Garbage key: error does not echo the input.
        let err = SigningKey::from_parts(
            "k".into(),
            SigningAlg::Es256,
            "-----BEGIN PRIVATE KEY-----\nSECRETSECRET\n-----END PRIVATE KEY-----\n",
            es.certificate_pem.clone(),
            0,
        )
        .unwrap_err();
        assert!(!err.to_string().contains("SECRETSECRET"), "{err}");
    }

    #[test]
    fn debug_redacts_private_key() {
        let key = SigningKey::generate(SigningAlg::Es256, "dbg", 1).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains("redacted"));
        assert!(!debug.contains("PRIVATE KEY"));
        let body: String = key
            .private_key_pem()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert!(!debug.contains(&body[..20]));
    }

    #[test]
    fn generate_validates_inputs() {
        assert!(matches!(
            SigningKey::generate(SigningAlg::Es256, "", 1).unwrap_err(),
            JoseError::CertificateGeneration { .. }
        ));
        assert!(matches!(
            SigningKey::generate(SigningAlg::Es256, "x", 0).unwrap_err(),
            JoseError::CertificateGeneration { .. }
        ));
    }

    fn rsa_recipient() -> (String, String) {
        // Private key PEM (PKCS#8) and a self-signed certificate PEM.
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let cert = self_signed_certificate(&key, SigningAlg::Rs256, "receiver", 1).unwrap();
        (
            String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
            String::from_utf8(cert.to_pem().unwrap()).unwrap(),
        )
    }

    fn ec_recipient() -> (String, PKey<Private>) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let ec = EcKey::generate(&group).unwrap();
        let sec1 = String::from_utf8(ec.private_key_to_pem().unwrap()).unwrap();
        (sec1, PKey::from_ec_key(ec).unwrap())
    }

    #[test]
    fn jwe_rsa_oaep_256_to_certificate() {
        let (key_pem, cert_pem) = rsa_recipient();
        for enc in SUPPORTED_ENCS {
            let token =
                encrypt_compact("RSA-OAEP-256", enc, &cert_pem, "", b"secret payload").unwrap();
            assert_eq!(token.split('.').count(), 5);
            let (payload, header) = decrypt_with_private_key(&key_pem, &token).unwrap();
            assert_eq!(payload, b"secret payload");
            assert_eq!(header["alg"], "RSA-OAEP-256");
            assert_eq!(header["enc"], enc);
        }
        let token = encrypt_compact("RSA-OAEP", "A128GCM", &cert_pem, "{}", b"p").unwrap();
        assert_eq!(decrypt_with_private_key(&key_pem, &token).unwrap().0, b"p");
    }

    #[test]
    fn jwe_ecdh_es_to_jwk_and_public_key_pem() {
        let (sec1_pem, key) = ec_recipient();
        let spki_pem = String::from_utf8(key.public_key_to_pem().unwrap()).unwrap();
        let mut jwk = public_jwk_params(&key).unwrap();
        jwk.insert("kid".into(), Value::String("receiver-1".into()));
        let jwk = Value::Object(jwk).to_string();

        let token = encrypt_compact("ECDH-ES+A256KW", "A256GCM", &jwk, "", b"to jwk").unwrap();
        let (payload, header) = decrypt_with_private_key(&sec1_pem, &token).unwrap();
        assert_eq!(payload, b"to jwk");
        assert_eq!(header["kid"], "receiver-1");
        assert!(header.get("epk").is_some());

        for alg in ["ECDH-ES+A256KW", "ECDH-ES", "ECDH-ES+A128KW"] {
            let token = encrypt_compact(alg, "A128CBC-HS256", &spki_pem, "", b"to pem").unwrap();
            // PKCS#8 private key works as well as SEC1.
            let pkcs8 = String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap();
            assert_eq!(
                decrypt_with_private_key(&pkcs8, &token).unwrap().0,
                b"to pem"
            );
            assert_eq!(
                decrypt_with_private_key(&sec1_pem, &token).unwrap().0,
                b"to pem"
            );
        }
    }

    #[test]
    fn nested_sign_then_encrypt() {
        let signer = SigningKey::generate(SigningAlg::Ps256, "nested", 1).unwrap();
        let (key_pem, cert_pem) = rsa_recipient();
        let jws = signer
            .sign_compact(r#"{"typ":"JWT"}"#, br#"{"event":"x"}"#)
            .unwrap();
        let jwe = encrypt_compact(
            "RSA-OAEP-256",
            "A256GCM",
            &cert_pem,
            r#"{"cty":"JWT","alg":"dir","enc":"bogus"}"#,
            jws.as_bytes(),
        )
        .unwrap();
        let (inner, header) = decrypt_with_private_key(&key_pem, &jwe).unwrap();
        assert_eq!(header["cty"], "JWT");
        assert_eq!(header["alg"], "RSA-OAEP-256");
        assert_eq!(header["enc"], "A256GCM");
        let inner = String::from_utf8(inner).unwrap();
        let (payload, _) = verify_with_jwks(&jwks_of(&[&signer]), &inner).unwrap();
        assert_eq!(payload, br#"{"event":"x"}"#);
    }

    #[test]
    fn jwe_errors_are_clear() {
        let (_, cert_pem) = rsa_recipient();
        let (sec1, ec) = ec_recipient();
        let ec_pem = String::from_utf8(ec.public_key_to_pem().unwrap()).unwrap();

        let err = encrypt_compact("RSA1_5", "A256GCM", &cert_pem, "", b"x").unwrap_err();
        assert!(matches!(err, JoseError::UnsupportedJweAlg { .. }), "{err}");
        assert!(err.to_string().contains("RSA1_5"));
        let err = encrypt_compact("RSA-OAEP-256", "A512GCM", &cert_pem, "", b"x").unwrap_err();
        assert!(matches!(err, JoseError::UnsupportedJweEnc { .. }), "{err}");
        assert!(err.to_string().contains("A512GCM"));

        for garbage in [
            "",
            "hello",
            "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----",
            "{not json",
        ] {
            let err = encrypt_compact("RSA-OAEP-256", "A256GCM", garbage, "", b"x").unwrap_err();
            assert!(
                matches!(err, JoseError::InvalidRecipient { .. }),
                "{garbage:?}: {err}"
            );
            assert!(err.to_string().contains("recipient"), "{err}");
        }
        let err = encrypt_compact("RSA-OAEP-256", "A256GCM", &sec1, "", b"x").unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
        assert!(!err.to_string().contains("BEGIN"), "{err}");

        // Key type does not suit the alg.
        let err = encrypt_compact("RSA-OAEP-256", "A256GCM", &ec_pem, "", b"x").unwrap_err();
        assert!(
            matches!(err, JoseError::RecipientKeyMismatch { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("RSA"), "{err}");
        let err = encrypt_compact("ECDH-ES", "A256GCM", &cert_pem, "", b"x").unwrap_err();
        assert!(
            matches!(err, JoseError::RecipientKeyMismatch { .. }),
            "{err}"
        );
        let err = encrypt_compact(
            "ECDH-ES",
            "A256GCM",
            r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#,
            "",
            b"x",
        )
        .unwrap_err();
        assert!(
            matches!(err, JoseError::RecipientKeyMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn decrypt_with_wrong_key_fails() {
        let (_, cert_pem) = rsa_recipient();
        let (other_key, _) = rsa_recipient();
        let (ec_key, _) = ec_recipient();
        let token = encrypt_compact("RSA-OAEP-256", "A256GCM", &cert_pem, "", b"x").unwrap();
        let err = decrypt_with_private_key(&other_key, &token).unwrap_err();
        assert!(matches!(err, JoseError::Decryption { .. }), "{err}");
        let err = decrypt_with_private_key(&ec_key, &token).unwrap_err();
        assert!(matches!(err, JoseError::Decryption { .. }), "{err}");
        let err = decrypt_with_private_key(&other_key, "a.b.c").unwrap_err();
        assert!(matches!(err, JoseError::MalformedToken { .. }), "{err}");
    }
}
