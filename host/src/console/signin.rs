//! Signing in and out: the sign-in page (tenant token or admin token), portal links, logout,
//! and `/console/` sending each session to its home page.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use maud::html;
use sha2::{Digest, Sha256};

use super::layout::{self, Context};
use super::session::{
    self, LOGIN_COOKIE, PORTAL_SESSION_SECONDS, SESSION_COOKIE, Session, TOKEN_SESSION_SECONDS,
    TokenError, Who,
};
use super::{FormData, PageError};
use crate::api::AppState;

/// The sign-in routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/portal", get(portal))
}

/// `/console/`: the session's home, or the sign-in page.
pub async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session::session_of(&state, &headers) {
        Some(session) => super::see_other(&home_of(&session)),
        None => super::see_other("/console/login"),
    }
}

fn home_of(session: &Session) -> String {
    match &session.who {
        Who::Operator => "/console/admin/tenants".into(),
        Who::Tenant(id) => format!("/console/t/{id}/endpoints"),
    }
}

fn login_form(pre: &str, error: Option<&str>) -> maud::Markup {
    let context = Context::anonymous();
    layout::page(
        "Sign in",
        &context,
        html! {
            h1 { "Sign in" }
            p { "Sign in with your tenant token, or as the operator with the admin token. A portal link signs you in directly." }
            form.stack method="post" action="/console/login" {
                input type="hidden" name="_csrf" value=(pre);
                div.field.invalid[error.is_some()] {
                    label for="token" { "Token" }
                    input id="token" type="password" name="token" autocomplete="off" required
                        aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| "token-error")];
                    @if let Some(error) = error {
                        p.error id="token-error" role="alert" { (error) }
                    }
                }
                div { button type="submit" { "Sign in" } }
            }
        },
    )
}

async fn login_page(headers: HeaderMap) -> Response {
    let pre = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>());
    let cookie = session::cookie(LOGIN_COOKIE, &pre, 600, session::over_tls(&headers));
    ([(header::SET_COOKIE, cookie)], login_form(&pre, None)).into_response()
}

async fn login(State(state): State<AppState>, headers: HeaderMap, form: FormData) -> Response {
    let pre = session::read_cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if pre.is_empty() || form.get("_csrf") != Some(pre) {
        return PageError::Csrf.into_response();
    }
    let token = form.get("token").unwrap_or("").trim();
    let digest = Sha256::digest(token.as_bytes());
    let who = if !token.is_empty() && digest.as_slice() == state.engine.admin_token_digest {
        Some(Who::Operator)
    } else {
        state
            .engine
            .store
            .directory()
            .tenant_by_token_hash(&hex::encode(digest))
            .map(|t| Who::Tenant(t.id.clone()))
    };
    let Some(who) = who else {
        return (
            StatusCode::UNAUTHORIZED,
            login_form(pre, Some("This token is not valid.")),
        )
            .into_response();
    };
    let secure = session::over_tls(&headers);
    let target = match &who {
        Who::Operator => "/console/admin/tenants".to_string(),
        Who::Tenant(id) => format!("/console/t/{id}/endpoints"),
    };
    let cookie = session::start_session(
        &state.engine.store.sealer(),
        who,
        false,
        TOKEN_SESSION_SECONDS,
        secure,
    );
    let mut response = super::see_other(&target);
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response.headers_mut().append(
        header::SET_COOKIE,
        session::cookie(LOGIN_COOKIE, "", 0, secure),
    );
    response
}

async fn logout(State(state): State<AppState>, headers: HeaderMap, form: FormData) -> Response {
    if let Some(session) = session::session_of(&state, &headers)
        && !session.csrf_ok(form.get("_csrf"))
    {
        return PageError::Csrf.into_response();
    }
    let mut response = super::see_other("/console/login");
    response.headers_mut().append(
        header::SET_COOKIE,
        session::cookie(SESSION_COOKIE, "", 0, session::over_tls(&headers)),
    );
    response
}

#[derive(serde::Deserialize)]
struct PortalQuery {
    token: Option<String>,
}

/// `/console/portal?token=…`: opens a session for the link's tenant. Answered with a page that
/// moves on by itself (`<meta http-equiv=refresh>`, not a redirect): a `SameSite=Strict` cookie
/// set while following a link from another site (a mail, the provider's dashboard) is only sent
/// on the next navigation that starts from this site.
async fn portal(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<PortalQuery>,
) -> Response {
    let sealer = state.engine.store.sealer();
    let opened = query
        .token
        .as_deref()
        .ok_or(TokenError::Invalid)
        .and_then(|t| session::open_portal_link(&sealer, t));
    let (tenant, read_only, _link_expires) = match opened {
        Ok(claims) => claims,
        Err(TokenError::Expired) => {
            return layout::error_page(
                StatusCode::UNAUTHORIZED,
                "This portal link has expired. Ask for a new one.",
                None,
            );
        }
        Err(TokenError::Invalid) => {
            return layout::error_page(
                StatusCode::UNAUTHORIZED,
                "This portal link is not valid.",
                None,
            );
        }
    };
    if state.engine.store.directory().tenant(&tenant).is_none() {
        return PageError::NotFound.into_response();
    }
    // The session outlives a short link (so that one can finish what one started): an hour.
    let seconds = PORTAL_SESSION_SECONDS;
    let target = format!("/console/t/{tenant}/endpoints");
    let cookie = session::start_session(
        &sealer,
        Who::Tenant(tenant),
        read_only,
        seconds,
        session::over_tls(&headers),
    );
    let context = Context::anonymous();
    let body = layout::page(
        "Signing in",
        &context,
        html! {
            meta http-equiv="refresh" content=(format!("0;url={target}"));
            h1 { "Signed in" }
            p { a href=(target) { "Continue to the console" } }
        },
    );
    ([(header::SET_COOKIE, cookie)], body).into_response()
}
