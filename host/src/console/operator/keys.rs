//! Signing keys: which keys sign and which are retired (still published in the JWKS), and
//! rotating them.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;

use crate::api::AppState;
use crate::console::layout::{self, Context, Section};
use crate::console::session::Session;
use crate::console::{Done, FormData, PageError, check_post, operator_only, see_other};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/admin/keys", get(list))
        .route("/console/admin/keys/rotate", post(rotate))
}

async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    operator_only(&session)?;
    let keys = state.engine.keys.summaries();
    let context = Context::operator(&session, Section::Keys);
    let body = html! {
        h1 { "Signing keys" }
        (layout::notice(done.done.as_deref()))
        p { "Keys that sign " code { "jws" } " steps. Retired keys stay in " a href="/.well-known/jwks.json" { "the JWKS" } " until receivers no longer need them." }
        div.table-wrap { table {
            caption.skip { "Signing keys" }
            thead { tr { th scope="col" { "Key id" } th scope="col" { "Algorithm" } th scope="col" { "Created" } th scope="col" { "State" } } }
            tbody { @for k in &keys {
                tr {
                    td.mono { (k.kid) }
                    td { (k.alg) }
                    td { (layout::time(k.created_at)) }
                    td { @match k.retired_at { Some(at) => { span.badge.muted { "retired " (layout::time(at)) } }, None => { span.badge.ok { "signing" } } } }
                }
            } }
        } }
        @if !session.read_only {
            form method="post" action="/console/admin/keys/rotate" data-confirm="Rotate every signing key now?" {
                (layout::csrf(&session))
                button type="submit" { "Rotate keys" }
            }
        }
    };
    Ok(layout::page("Signing keys", &context, body).into_response())
}

async fn rotate(
    State(state): State<AppState>,
    session: Session,
    form: FormData,
) -> Result<Response, PageError> {
    operator_only(&session)?;
    check_post(&session, &form)?;
    state
        .engine
        .keys
        .rotate(None)
        .await
        .map_err(|e| PageError::Api(crate::api::error::ApiError::internal("rotating keys", e)))?;
    Ok(see_other("/console/admin/keys?done=rotated"))
}
