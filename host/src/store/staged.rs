//! The staged next certificate of a client certificate record, as it crosses the store's
//! interface.

/// A client certificate record's next certificate: its own key (generated here, with a CSR for
/// the tenant's CA), the signed certificate once uploaded, and when it takes over.
#[derive(Clone)]
pub struct StoredStagedCertificate {
    /// The record it replaces (`cc_…`).
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// The next key (PKCS#8 PEM); never leaves the host. Sealed at rest.
    pub private_key_pem: String,
    /// The CSR of the next key.
    pub csr_pem: Option<String>,
    /// The signed next certificate (chain), once uploaded.
    pub certificate_pem: Option<String>,
    /// Unix seconds from which the next certificate is presented (`None`: as soon as it is
    /// uploaded).
    pub activate_at: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl StoredStagedCertificate {
    /// True when it has a certificate and its time has come by `now` (unix seconds).
    pub fn is_due(&self, now: i64) -> bool {
        self.certificate_pem.is_some() && self.activate_at.is_none_or(|at| at <= now)
    }
}
