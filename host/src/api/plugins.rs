//! `/v1/plugins` and `/v1/tenants/{tenant}/plugins`: what plugins exist, and tenant-owned
//! components (uploaded as raw bytes, checked and loaded before they are kept).
//!
//! An upload is admitted before its body is read: the name is checked, the tenant's plugin
//! count, and whether one of the few upload slots (`api.max_concurrent_uploads`) frees up within
//! `api.upload_wait` (else 503 with `Retry-After`). The body is then streamed to an unnamed
//! temporary file in the data directory, counted as it arrives and refused (413) as soon as it
//! passes `api.max_plugin_mib`, and read back once, whole, for compiling. Custom sections (names,
//! producers, debug info, padding) are stripped before the component is compiled, hashed and
//! stored: the `sha256` the API reports is that of the stripped component, and only its bytes
//! count against the tenant's quota (`api.max_plugin_bytes_per_tenant_mib`). What is left of a
//! refused upload's body is read and dropped after the answer (bounded), so that the client
//! reads the answer rather than a reset connection.

use std::path::PathBuf;
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::engine::UseCaseError;
use crate::plugins::{
    LoadError, PluginStatus, QuotaError, TenantPluginLimits, read_stripped, validate_plugin_name,
};

/// How long, at most, the rest of a refused upload is read and dropped after the answer.
const LINGER: Duration = Duration::from_secs(5);

/// Built-in and operator plugins: name, kind, version, hash, source, status, last load error.
#[utoipa::path(get, path = "/v1/plugins", tag = "plugins", responses((status = 200, body = Vec<Object>)))]
pub async fn list_plugins(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiJson<Vec<PluginStatus>> {
    ApiJson(state.engine.registry.list(None))
}

/// The tenant's own plugins (named `tenant:<name>` in endpoint steps).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/plugins", tag = "plugins", params(("tenant" = String, Path)),
    responses((status = 200, body = Vec<Object>), (status = 404, body = ErrorBody)))]
pub async fn list_tenant_plugins(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<ApiJson<Vec<PluginStatus>>, ApiError> {
    caller.tenant(&state, &tenant)?;
    Ok(ApiJson(state.engine.registry.list(Some(&tenant))))
}

/// One of the tenant's plugins: the same entry as in the tenant's list.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/plugins/{name}", tag = "plugins",
    params(("tenant" = String, Path), ("name" = String, Path, description = "1-63 of a-z, 0-9, '-'")),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody, description = "Invalid name")))]
pub async fn get_tenant_plugin(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> Result<ApiJson<PluginStatus>, ApiError> {
    caller.tenant(&state, &tenant)?;
    check_name(&name)?;
    let full = format!("tenant:{name}");
    state
        .engine
        .registry
        .list(Some(&tenant))
        .into_iter()
        .find(|p| p.name == full)
        .map(ApiJson)
        .ok_or_else(|| ApiError::not_found("plugin", &full))
}

/// Uploads (or replaces) a tenant plugin: the body is the component's bytes. Its custom
/// sections are stripped (the answer's `sha256` is that of the stripped component); it is then
/// compiled, checked against the plugin worlds and smoke-called before it is stored; a refused
/// component leaves the previous version in place.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/plugins/{name}", tag = "plugins",
    params(("tenant" = String, Path), ("name" = String, Path, description = "1-63 of a-z, 0-9, '-'")),
    request_body(content((Vec<u8> = "application/wasm"), (Vec<u8> = "application/octet-stream")), description = "The component's bytes (no content type is accepted too)"),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody, description = "Empty or interrupted body"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 408, body = ErrorBody, description = "The body did not arrive in time"),
        (status = 413, body = ErrorBody, description = "Above api.max_plugin_mib"),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody, description = "Invalid name, refused component, or quota (api.max_plugins_per_tenant, api.max_plugin_bytes_per_tenant_mib)"),
        (status = 503, body = ErrorBody, description = "Too many uploads in progress (api.max_concurrent_uploads); retry after `Retry-After`")))]
pub async fn put_tenant_plugin(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<ApiJson<PluginStatus>, Response> {
    let mut body = body.into_data_stream();
    let result = match caller {
        Ok(caller) => upload(&state, &caller, &tenant, &name, &headers, &mut body).await,
        Err(e) => Err(e),
    };
    result.map(ApiJson).map_err(|e| {
        // Most refusals come before the body is read (or before its end). Answering and
        // closing with unread bytes makes the kernel reset the connection, and the client may
        // see that instead of the answer: read and drop the rest meanwhile (bounded; up to
        // twice the upload limit, so that a body somewhat too large is read to its end).
        let limit = state
            .engine
            .config
            .api
            .max_plugin_mib
            .saturating_mul(2 << 20);
        tokio::spawn(linger(body, limit));
        let busy = e.code == "uploads_busy";
        let mut response = e.into_response();
        if busy {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    })
}

/// Reads and drops what is left of `body`: at most `limit` bytes, for at most [`LINGER`].
async fn linger(mut body: BodyDataStream, limit: usize) {
    let _ = tokio::time::timeout(LINGER, async {
        let mut read = 0usize;
        while let Some(Ok(chunk)) = body.next().await {
            read = read.saturating_add(chunk.len());
            if read > limit {
                break;
            }
        }
    })
    .await;
}

/// Deletes a tenant plugin.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/plugins/{name}", tag = "plugins",
    params(("tenant" = String, Path), ("name" = String, Path, description = "1-63 of a-z, 0-9, '-'")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody, description = "Invalid name")))]
pub async fn delete_tenant_plugin(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.tenant(&state, &tenant)?;
    check_name(&name)?;
    match state.engine.delete_tenant_plugin(&tenant, &name).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::not_found("plugin", &format!("tenant:{name}"))),
        Err(UseCaseError::Store(e)) => Err(ApiError::from(e)),
        Err(e) => Err(ApiError::internal("deleting the plugin", e)),
    }
}

/// 422 naming `name` unless it is a valid plugin name.
fn check_name(name: &str) -> Result<(), ApiError> {
    validate_plugin_name(name).map_err(|e| match e {
        LoadError::InvalidName { reason, .. } => {
            ApiError::invalid("name", format!("invalid plugin name: {reason}"))
        }
        other => ApiError::invalid("name", other.to_string()),
    })
}

fn too_large(limits: &TenantPluginLimits) -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "body_too_large",
        field: None,
        message: format!(
            "a plugin may be at most {} MiB (api.max_plugin_mib)",
            limits.max_component_bytes >> 20
        ),
    }
}

fn quota_error(error: QuotaError, limits: &TenantPluginLimits) -> ApiError {
    match error {
        QuotaError::ComponentTooLarge { .. } => too_large(limits),
        other => ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "quota_exceeded",
            field: None,
            message: other.to_string(),
        },
    }
}

async fn upload(
    state: &AppState,
    caller: &Caller,
    tenant: &str,
    name: &str,
    headers: &HeaderMap,
    body: &mut BodyDataStream,
) -> Result<PluginStatus, ApiError> {
    caller.tenant(state, tenant)?;
    check_name(name)?;
    if let Some(value) = headers.get(header::CONTENT_TYPE) {
        let media = value
            .to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if !matches!(
            media.as_str(),
            "application/wasm" | "application/octet-stream"
        ) {
            return Err(ApiError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                field: None,
                message: "send the component's bytes as `application/wasm` (or `application/octet-stream`)".into(),
            });
        }
    }
    let config = &state.engine.config.api;
    let registry = &state.engine.registry;
    let uploads = registry.tenant_uploads(|| TenantPluginLimits::from_config(config));
    let limits = uploads.limits;
    // Refuse what cannot be stored before reading a byte of it.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limits.max_component_bytes as u64) {
        return Err(too_large(&limits));
    }
    registry
        .check_tenant_quota(tenant, name, None)
        .map_err(|e| quota_error(e, &limits))?;
    let _permit = match tokio::time::timeout(config.upload_wait, uploads.permits.acquire()).await {
        Ok(Ok(permit)) => permit,
        _ => {
            return Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "uploads_busy",
                field: None,
                message: format!(
                    "{} plugin uploads are in progress, the most at once (api.max_concurrent_uploads); try again",
                    limits.max_concurrent_uploads
                ),
            });
        }
    };
    // The listener bounds how long the body may take (`api.body_read_timeout`, from this
    // first read: the wait for a slot above does not count), answering 408.
    let received = receive(
        body,
        limits.max_component_bytes,
        &state.engine.config.data_dir,
    )
    .await;
    let file = match received? {
        Received::Empty => {
            return Err(ApiError::bad_request(
                None,
                "the body must be the plugin's component bytes (.wasm)",
            ));
        }
        Received::TooLarge => return Err(too_large(&limits)),
        Received::File(file, len) => (file, len),
    };
    let plugin = format!("tenant:{name}");
    let (bytes, uploaded) = tokio::task::spawn_blocking(move || read_back(&plugin, file))
        .await
        .map_err(|e| ApiError::internal("reading the upload back", e))??;
    if bytes.len() < uploaded {
        tracing::info!(
            tenant,
            plugin = name,
            uploaded,
            stripped = uploaded - bytes.len(),
            "stripped the custom sections of an uploaded component"
        );
    }
    registry
        .check_tenant_quota(tenant, name, Some(bytes.len()))
        .map_err(|e| quota_error(e, &limits))?;
    state
        .engine
        .put_tenant_plugin(tenant, name, &bytes)
        .await
        .map_err(|e| match e {
            UseCaseError::Store(e) => ApiError::from(e),
            UseCaseError::Plugin(LoadError::Limit(message)) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "quota_exceeded",
                field: None,
                message,
            },
            UseCaseError::Plugin(e @ (LoadError::Io { .. } | LoadError::Runtime(_))) => {
                ApiError::internal("storing the plugin", e)
            }
            UseCaseError::Plugin(e) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "plugin_refused",
                field: None,
                message: e.to_string(),
            },
        })
}

/// What arrived of an upload's body.
enum Received {
    /// Nothing.
    Empty,
    /// More than the limit (the rest was not read).
    TooLarge,
    /// The bytes, in an unnamed temporary file, and how many there are.
    File(std::fs::File, usize),
}

/// Streams `body` to an unnamed temporary file (in `data_dir`, else the system's temporary
/// directory), stopping as soon as it passes `limit` bytes. The chunks go as they came to one
/// blocking thread that writes them (a few at a time: the client is not read faster than the
/// disk takes it).
async fn receive(
    body: &mut BodyDataStream,
    limit: usize,
    data_dir: &std::path::Path,
) -> Result<Received, ApiError> {
    let dir: PathBuf = data_dir.to_path_buf();
    let (chunks, mut to_write) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        use std::io::Write;
        let mut file = tempfile::tempfile_in(&dir).or_else(|_| tempfile::tempfile())?;
        while let Some(chunk) = to_write.blocking_recv() {
            file.write_all(&chunk)?;
        }
        Ok(file)
    });
    let mut total = 0usize;
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(None, format!("the upload was interrupted: {e}")))?;
        total = total.saturating_add(chunk.len());
        if total > limit {
            return Ok(Received::TooLarge);
        }
        if chunks.send(chunk).await.is_err() {
            break; // the writer failed: its error is below
        }
    }
    drop(chunks);
    let written = |e: &dyn std::fmt::Display| {
        ApiError::internal("writing the upload to a temporary file", e.to_string())
    };
    let file = writer
        .await
        .map_err(|e| written(&e))?
        .map_err(|e| written(&e))?;
    if total == 0 {
        return Ok(Received::Empty);
    }
    Ok(Received::File(file, total))
}

/// Reads an upload back from its file, without its custom sections (which are skipped, not
/// read); with the size uploaded. What is not a component is refused from its first 8 bytes.
fn read_back(
    plugin: &str,
    (mut file, len): (std::fs::File, usize),
) -> Result<(Vec<u8>, usize), ApiError> {
    use std::io::{Read, Seek};
    let mut preamble = [0u8; 8];
    let read = file
        .rewind()
        .and_then(|()| file.read(&mut preamble))
        .map_err(|e| ApiError::internal("reading the upload back", e))?;
    let reason = if read < 8 || &preamble[..4] != b"\0asm" {
        Some("it does not start with the WebAssembly magic number `\\0asm`".to_string())
    } else if preamble[4..8] == [1, 0, 0, 0] {
        Some(
            "it is a core WebAssembly module; plugins must be components (build for \
             wasm32-wasip2, or run `wasm-tools component new`)"
                .to_string(),
        )
    } else if preamble[6..8] != [1, 0] {
        Some(format!(
            "unknown WebAssembly version/layer {:02x?}",
            &preamble[4..8]
        ))
    } else {
        None
    };
    if let Some(reason) = reason {
        let error = LoadError::NotAComponent {
            plugin: plugin.to_string(),
            reason,
        };
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "plugin_refused",
            field: None,
            message: error.to_string(),
        });
    }
    match read_stripped(file, len as u64) {
        Ok(Ok(bytes)) => Ok((bytes, len)),
        Ok(Err(e)) => Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "plugin_refused",
            field: None,
            message: format!("plugin `{plugin}` is refused: {e}"),
        }),
        Err(e) => Err(ApiError::internal("reading the upload back", e)),
    }
}
