//! The files on disk: the data directory (0700), its `lock` file (one process owns the
//! directory), and the database file (0600, created before SQLite opens it so that it never
//! exists with wider permissions; SQLite gives its `-wal` and `-shm` files the same mode).

use std::fs::File;
use std::path::Path;

use crate::store::StoreError;

fn open_error(path: &Path, error: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        location: path.display().to_string(),
        reason: error.to_string(),
    }
}

/// Creates `dir` (and its parents) if it does not exist; a directory created here is 0700.
pub(super) fn ensure_private_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| open_error(dir, e))?;
    // The mode above went through the umask; make it exactly 0700.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| open_error(dir, e))?;
    }
    Ok(())
}

/// Opens a file, creating it with mode 0600 if it does not exist (an existing file keeps its
/// mode and content).
fn open_private_file(path: &Path) -> Result<File, StoreError> {
    let mut create = std::fs::OpenOptions::new();
    create.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
    match create.open(path) {
        Ok(file) => {
            // The mode above went through the umask; make it exactly 0600.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| open_error(path, e))?;
            }
            Ok(file)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| open_error(path, e)),
        Err(e) => Err(open_error(path, e)),
    }
}

/// Takes the exclusive lock on `<data_dir>/lock`. The returned file holds it until dropped; the
/// operating system releases it when the process dies, even by `kill -9`.
pub(super) fn lock_data_dir(data_dir: &Path) -> Result<File, StoreError> {
    let path = data_dir.join("lock");
    let lock = open_private_file(&path)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(data_dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(open_error(&path, e)),
    }
}

/// Makes sure the database file exists (created 0600, in a 0700 directory if that is missing
/// too) before SQLite opens it.
pub(super) fn create_database_file(path: &Path) -> Result<(), StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_private_dir(parent)?;
    }
    open_private_file(path).map(drop)
}
