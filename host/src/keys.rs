//! The host's JWS signing keys: the current key of each configured algorithm is created at
//! start-up (others on first use), stored in the store so that every node signs with the same
//! key and serves the same JWKS, rotated on demand (the new key signs, retired keys stay
//! published until they expire), published as a JWKS with each key's self-signed certificate
//! (`x5c`).
//!
//! Nodes agree through the store: a key is created only if its algorithm has no current key
//! there ([`KeyInsert::IfNoCurrent`]), and every node reloads the keys when their change counter
//! moves ([`KeyManager::reload`]).
//!
//! Private keys never leave this module except to be persisted; plugins ask the host to sign.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::jose::{self, SigningAlg, SigningKey};
use crate::model::now_unix;
use crate::store::{KeyInsert, Store, StoreError, StoredSigningKey};

/// Why a signing-key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Key generation or signing failed.
    #[error(transparent)]
    Jose(#[from] jose::JoseError),
    /// The algorithm is not one the host signs with.
    #[error("unsupported signing algorithm `{0}` (use RS256, PS256, ES256 or EdDSA/Ed25519)")]
    UnsupportedAlg(String),
    /// A blocking task failed.
    #[error("signing task failed: {0}")]
    Task(String),
}

/// A public view of one key, for the API.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct KeySummary {
    /// Key id (`kid`).
    pub kid: String,
    /// Algorithm.
    pub alg: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; absent for the current key of its algorithm.
    pub retired_at: Option<i64>,
    /// The self-signed certificate, PEM.
    pub certificate_pem: String,
}

struct KeyEntry {
    key: Arc<SigningKey>,
    retired_at: Option<i64>,
}

/// The signing keys.
pub struct KeyManager {
    store: Arc<Store>,
    subject: String,
    retired_lifetime: Duration,
    keys: RwLock<Vec<KeyEntry>>,
    generation: tokio::sync::Mutex<()>,
}

impl KeyManager {
    /// Loads the stored keys, then makes sure each of `algorithms` has a current key (so a
    /// receiver that fetches the JWKS ahead of the first delivery finds it).
    pub async fn load(
        store: Arc<Store>,
        subject: String,
        retired_lifetime: Duration,
        algorithms: &[SigningAlg],
    ) -> Result<Arc<Self>, KeyError> {
        let manager = Arc::new(Self {
            keys: RwLock::new(read_keys(&store).await?),
            store,
            subject,
            retired_lifetime,
            generation: tokio::sync::Mutex::new(()),
        });
        for alg in algorithms {
            manager.current_key(*alg).await?;
        }
        Ok(manager)
    }

    /// Reads the keys again from the store (another node created or rotated one).
    pub async fn reload(&self) -> Result<(), KeyError> {
        let keys = read_keys(&self.store).await?;
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        Ok(())
    }

    fn current(&self, alg: SigningAlg) -> Option<Arc<SigningKey>> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .rev()
            .find(|e| e.key.alg == alg && e.retired_at.is_none())
            .map(|e| e.key.clone())
    }

    /// The current key for `alg`, generating (and storing) one if there is none yet.
    pub async fn current_key(&self, alg: SigningAlg) -> Result<Arc<SigningKey>, KeyError> {
        if let Some(key) = self.current(alg) {
            return Ok(key);
        }
        let _guard = self.generation.lock().await;
        if let Some(key) = self.current(alg) {
            return Ok(key);
        }
        self.generate(alg, KeyInsert::IfNoCurrent).await
    }

    /// Creates a key for `alg`: with `IfNoCurrent` only if no node has made one meanwhile.
    /// Either way the keys are then read back from the store, so this node signs with the key
    /// every node signs with.
    async fn generate(
        &self,
        alg: SigningAlg,
        mode: KeyInsert,
    ) -> Result<Arc<SigningKey>, KeyError> {
        let subject = self.subject.clone();
        let key = tokio::task::spawn_blocking(move || SigningKey::generate(alg, &subject, 825))
            .await
            .map_err(|e| KeyError::Task(e.to_string()))??;
        let inserted = self
            .store
            .add_signing_key(
                &StoredSigningKey {
                    kid: key.kid.clone(),
                    alg: alg.to_string(),
                    private_key_pem: key.private_key_pem().to_string(),
                    certificate_pem: key.certificate_pem.clone(),
                    created_at: key.created_at,
                    retired_at: None,
                },
                mode,
            )
            .await?;
        if inserted {
            tracing::info!(kid = %key.kid, %alg, "new signing key");
        }
        self.reload().await?;
        self.current(alg).ok_or_else(|| {
            KeyError::Store(StoreError::Conflict(format!(
                "no current {alg} signing key after creating one"
            )))
        })
    }

    /// Signs `payload` with the current key of `alg` (`RS256`, `PS256`, `ES256`, `EdDSA`).
    pub async fn sign(
        &self,
        alg: &str,
        header_json: &str,
        payload: &[u8],
    ) -> Result<String, KeyError> {
        let alg: SigningAlg = alg
            .parse()
            .map_err(|_| KeyError::UnsupportedAlg(alg.to_string()))?;
        let key = self.current_key(alg).await?;
        Ok(key.sign_compact(header_json, payload)?)
    }

    /// Rotates: a new key for `alg` (or for every algorithm in use) signs from now on; the old
    /// ones stay published until `keys.retired_key_lifetime` has passed.
    pub async fn rotate(&self, alg: Option<SigningAlg>) -> Result<Vec<KeySummary>, KeyError> {
        let _guard = self.generation.lock().await;
        let algs: Vec<SigningAlg> = match alg {
            Some(alg) => vec![alg],
            None => {
                let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
                let mut algs: Vec<SigningAlg> = keys
                    .iter()
                    .filter(|e| e.retired_at.is_none())
                    .map(|e| e.key.alg)
                    .collect();
                algs.dedup();
                if algs.is_empty() {
                    vec![SigningAlg::Es256]
                } else {
                    algs
                }
            }
        };
        for alg in algs {
            self.generate(alg, KeyInsert::Rotate).await?;
        }
        self.prune().await?;
        Ok(self.summaries())
    }

    async fn prune(&self) -> Result<(), KeyError> {
        let cutoff = now_unix() - self.retired_lifetime.as_secs() as i64;
        self.store.prune_signing_keys(cutoff).await?;
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|e| e.retired_at.is_none_or(|at| at >= cutoff));
        Ok(())
    }

    /// Every published key.
    pub fn summaries(&self) -> Vec<KeySummary> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .map(|e| KeySummary {
                kid: e.key.kid.clone(),
                alg: e.key.alg.to_string(),
                created_at: e.key.created_at,
                retired_at: e.retired_at,
                certificate_pem: e.key.certificate_pem.clone(),
            })
            .collect()
    }

    /// The JWKS document: current and not yet expired retired keys.
    pub fn jwks(&self) -> serde_json::Value {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let cutoff = now_unix() - self.retired_lifetime.as_secs() as i64;
        let live: Vec<&SigningKey> = keys
            .iter()
            .filter(|e| e.retired_at.is_none_or(|at| at >= cutoff))
            .map(|e| e.key.as_ref())
            .collect();
        jose::jwks_document(&live)
    }
}

/// Every stored key, parsed.
async fn read_keys(store: &Store) -> Result<Vec<KeyEntry>, KeyError> {
    let mut keys = Vec::new();
    for row in store.signing_keys().await? {
        let alg: SigningAlg = row
            .alg
            .parse()
            .map_err(|_| KeyError::UnsupportedAlg(row.alg.clone()))?;
        let key = SigningKey::from_parts(
            row.kid,
            alg,
            &row.private_key_pem,
            row.certificate_pem,
            row.created_at,
        )?;
        keys.push(KeyEntry {
            key: Arc::new(key),
            retired_at: row.retired_at,
        });
    }
    Ok(keys)
}
