//! API errors: a status, a machine-readable code, the offending field when there is one, and a
//! message for humans. Rendered as `{"error": {"code", "message", "field"}}`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// An error answer of the API.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (`invalid_field`, `not_found`, …).
    pub code: &'static str,
    /// Field at fault (`url`, `steps[0].config.key`).
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// JSON body of an error.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Details of an error.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code.
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// Field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// 422: `field` is wrong because `message`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_field",
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// 404 for `what` `id`.
    pub fn not_found(what: &str, id: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            field: None,
            message: format!("{what} `{id}` not found"),
        }
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            field: None,
            message: message.into(),
        }
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            field: None,
            message: message.into(),
        }
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            code: "conflict",
            field: None,
            message: message.into(),
        }
    }

    /// 400 for a malformed request.
    pub fn bad_request(field: Option<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            field,
            message: message.into(),
        }
    }

    /// 500; the details go to the log, not to the caller.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            field: None,
            message: format!("{context}: internal error (see the engine's log)"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { what, id } => ApiError::not_found(what, &id),
            StoreError::Conflict(message) => ApiError::conflict(message),
            StoreError::WriterGone => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "shutting_down",
                field: None,
                message: "the engine is shutting down".into(),
            },
            StoreError::Unavailable(_) => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "store_unavailable",
                field: None,
                message: "the database is unavailable; try again".into(),
            },
            other => ApiError::internal("storage failed", other),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let text = rejection.body_text();
        match rejection {
            JsonRejection::JsonDataError(_) => {
                // "Failed to deserialize the JSON body into the target type: steps[0]: missing field `plugin` at line 1 column 40"
                let detail = text
                    .split_once("target type: ")
                    .map(|(_, d)| d)
                    .unwrap_or(&text);
                let (field, reason) = match detail.split_once(": ") {
                    Some((field, reason)) if !field.contains(' ') => {
                        (Some(field.to_string()), reason.to_string())
                    }
                    _ => (None, detail.to_string()),
                };
                let field = field.or_else(|| {
                    reason
                        .split('`')
                        .nth(1)
                        .filter(|_| {
                            reason.starts_with("missing field")
                                || reason.starts_with("unknown field")
                        })
                        .map(str::to_string)
                });
                Self {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    code: "invalid_field",
                    field,
                    message: reason,
                }
            }
            JsonRejection::JsonSyntaxError(_) => Self {
                status,
                code: "malformed_json",
                field: None,
                message: text,
            },
            JsonRejection::MissingJsonContentType(_) => Self {
                status,
                code: "unsupported_media_type",
                field: None,
                message: "send the body as JSON with `content-type: application/json`".into(),
            },
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => Self {
                status,
                code: "body_too_large",
                field: None,
                message: "the request body is larger than the engine accepts (api.max_body_kib)"
                    .into(),
            },
            _ => Self {
                status,
                code: "bad_request",
                field: None,
                message: text,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// `Json` whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}
