//! A tenant's pages, under `/console/t/{tenant}/`: endpoints, the message log, client
//! certificates, plugins, and where to verify signatures. Every handler first checks that the
//! session may see the tenant (404 otherwise, as for a tenant that does not exist).

mod certificates;
mod endpoints;
mod messages;
mod plugins;
mod verify;

use axum::Router;

use crate::api::AppState;

/// The tenant routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(endpoints::routes())
        .merge(messages::routes())
        .merge(certificates::routes())
        .merge(plugins::routes())
        .merge(verify::routes())
}
