//! The web console: a tenant portal and an operator console, served under `/console/` on the
//! API's listener.
//!
//! - Server-rendered HTML (maud), one stylesheet and one small script embedded in the binary
//!   ([`assets`]); nothing is fetched from elsewhere, and every page works as plain HTML forms.
//! - A strict Content-Security-Policy on every answer (no inline script or style), no
//!   referrer, no caching.
//! - Sign-in by portal link, tenant token or admin token; a signed, stateless session cookie
//!   with CSRF tokens on every form ([`session`]).
//! - Every change goes through the API's own handlers, called in-process as the signed-in
//!   operator or tenant ([`crate::api::inproc`]): the console validates, refuses and redacts
//!   exactly as the API does, and shows the API's errors at the field they name.
//! - A tenant session sees only its tenant: any other tenant's page answers 404.

mod assets;
mod forms;
mod layout;
mod operator;
pub mod session;
mod signin;
mod tenant;

use axum::Router;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::model::Tenant;
use session::Session;

/// The Content-Security-Policy of every console answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'";

/// The console, for `engine` (merged with the API's router on the same listener).
pub fn router(engine: std::sync::Arc<crate::engine::Engine>) -> Router {
    routes().with_state(AppState { engine })
}

/// The console's routes (state: the API's).
fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(signin::home))
        .merge(signin::routes())
        .merge(assets::routes())
        .merge(tenant::routes())
        .merge(operator::routes())
        .route("/console/{*rest}", axum::routing::any(not_found))
        .layer(axum::middleware::map_response(security_headers))
}

async fn not_found() -> Response {
    PageError::NotFound.into_response()
}

/// Headers every console answer carries.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The `?done=` of a page shown after an action (see [`layout::notice`]).
#[derive(Debug, Default, serde::Deserialize)]
pub struct Done {
    /// The action's code.
    pub done: Option<String>,
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum PageError {
    /// No such page, or not this session's to see.
    NotFound,
    /// The session may not do this (read-only, or not the operator).
    Forbidden(&'static str),
    /// A form without a valid CSRF token.
    Csrf,
    /// The API refused (not a field error: those are shown in the form).
    Api(ApiError),
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        if error.status == StatusCode::NOT_FOUND {
            PageError::NotFound
        } else {
            PageError::Api(error)
        }
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(error: crate::store::StoreError) -> Self {
        ApiError::from(error).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::NotFound => layout::error_page(
                StatusCode::NOT_FOUND,
                "There is no such page, or it is not yours to see.",
                None,
            ),
            PageError::Forbidden(why) => layout::error_page(StatusCode::FORBIDDEN, why, None),
            PageError::Csrf => layout::error_page(
                StatusCode::FORBIDDEN,
                "This form is stale or did not come from this console; reload the page and try again.",
                None,
            ),
            PageError::Api(error) => layout::error_page(error.status, &error.message, None),
        }
    }
}

/// The fields of a submitted `application/x-www-form-urlencoded` form, in order.
#[derive(Debug, Default, Clone)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (checkboxes sharing a name), in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, trimmed; `None` when empty.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    /// Parses a form body.
    pub fn parse(body: &[u8]) -> Self {
        FormData(
            body.split(|b| *b == b'&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let mut halves = pair.splitn(2, |b| *b == b'=');
                    let name = decode(halves.next().unwrap_or_default());
                    let value = decode(halves.next().unwrap_or_default());
                    (name, value)
                })
                .collect(),
        )
    }
}

/// Percent-decoding of one form component (`+` is a space).
fn decode(part: &[u8]) -> String {
    let mut out = Vec::with_capacity(part.len());
    let mut i = 0;
    while i < part.len() {
        match part[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < part.len() => {
                let hex = std::str::from_utf8(&part[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl<S: Send + Sync> FromRequest<S> for FormData {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(FormData::parse(&body))
    }
}

/// Checks that a posted form comes from this session's pages and that the session may change
/// things.
pub fn check_post(session: &Session, form: &FormData) -> Result<(), PageError> {
    if !session.csrf_ok(form.get("_csrf")) {
        return Err(PageError::Csrf);
    }
    if session.read_only {
        return Err(PageError::Forbidden(
            "This session is read-only: it can look but not change anything.",
        ));
    }
    Ok(())
}

/// The tenant `id` if this session may see it; 404 otherwise (whether or not it exists).
pub fn tenant_scope(state: &AppState, session: &Session, id: &str) -> Result<Tenant, PageError> {
    if !session.may_see(id) {
        return Err(PageError::NotFound);
    }
    state
        .engine
        .store
        .directory()
        .tenant(id)
        .cloned()
        .ok_or(PageError::NotFound)
}

/// Only the operator may see this.
pub fn operator_only(session: &Session) -> Result<(), PageError> {
    if session.is_operator() {
        Ok(())
    } else {
        Err(PageError::NotFound)
    }
}

/// A redirect after a successful form (303: the browser follows with a GET).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_percent_and_plus() {
        let form = FormData::parse(b"a=1+2&b=%3Cscript%3E&c=&steps%5B0%5D.config.key=x%25&d=%zz");
        assert_eq!(form.get("a"), Some("1 2"));
        assert_eq!(form.get("b"), Some("<script>"));
        assert_eq!(form.text("c"), None);
        assert_eq!(form.get("steps[0].config.key"), Some("x%"));
        assert_eq!(form.get("d"), Some("%zz"));
    }
}
