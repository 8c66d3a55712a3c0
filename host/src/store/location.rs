//! `store.url`: which backend, and where. `sqlite:///abs/path/file.sqlite3` (the default is
//! `<data_dir>/wasmhook.sqlite3`) or `postgres://user[:password]@host[:port]/db[?sslmode=…]`.

use std::path::{Path, PathBuf};

use super::StoreError;

/// Where the store lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file (one node: the data directory's lock).
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by every node. The URL as given (it may hold a password:
    /// never print it; use [`StoreLocation::redacted`]).
    Postgres(String),
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl StoreLocation {
    /// Parses `store.url`; `None` means SQLite under `data_dir`.
    pub fn parse(url: Option<&str>, data_dir: &Path) -> Result<Self, StoreError> {
        let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(StoreLocation::Sqlite(data_dir.join("wasmhook.sqlite3")));
        };
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Ok(StoreLocation::Sqlite(data_dir.join("wasmhook.sqlite3")));
            }
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(StoreError::InvalidUrl(format!(
                    "`sqlite://{}` is not an absolute path: write sqlite:///absolute/path/file.sqlite3",
                    path.display()
                )));
            }
            return Ok(StoreLocation::Sqlite(path));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url.parse::<tokio_postgres::Config>().map_err(|e| {
                StoreError::InvalidUrl(format!("{} is not a PostgreSQL URL: {e}", redact_url(url)))
            })?;
            return Ok(StoreLocation::Postgres(url.to_string()));
        }
        Err(StoreError::InvalidUrl(format!(
            "`{}` must start with sqlite:// or postgres://",
            redact_url(url)
        )))
    }

    /// The location with any password replaced by `***` (for logs and errors).
    pub fn redacted(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => format!("sqlite://{}", path.display()),
            StoreLocation::Postgres(url) => redact_url(url),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`; anything after `?` that
/// names a password is dropped too.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => format!("{scheme}://{userinfo}@{host}"),
            },
            None => format!("{scheme}://{rest}"),
        },
        None => base.to_string(),
    };
    if let Some(query) = query {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.to_ascii_lowercase().starts_with("password"))
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_passwords_never_print() {
        let dir = Path::new("/data");
        assert_eq!(
            StoreLocation::parse(None, dir).unwrap(),
            StoreLocation::Sqlite("/data/wasmhook.sqlite3".into())
        );
        assert_eq!(
            StoreLocation::parse(Some("sqlite:///tmp/x.db"), dir).unwrap(),
            StoreLocation::Sqlite("/tmp/x.db".into())
        );
        assert!(StoreLocation::parse(Some("sqlite://rel.db"), dir).is_err());
        let pg = StoreLocation::parse(
            Some("postgres://app:hunter2@127.0.0.1:5432/hooks?sslmode=require"),
            dir,
        )
        .unwrap();
        assert_eq!(
            pg.redacted(),
            "postgres://app:***@127.0.0.1:5432/hooks?sslmode=require"
        );
        assert!(!format!("{pg:?}").contains("hunter2"));
        let err = StoreLocation::parse(Some("mysql://root:pw@h/db"), dir).unwrap_err();
        assert!(!err.to_string().contains("pw@"), "{err}");
        assert_eq!(
            redact_url("postgres://h/db?password=x&sslmode=disable"),
            "postgres://h/db?sslmode=disable"
        );
    }
}
