//! The operator's pages, under `/console/admin/`: tenants (create, portal links, delete),
//! every plugin, signing keys, the queue and delivery rates. A tenant session gets 404 here.

mod keys;
mod plugins;
mod queue;
mod tenants;

use axum::Router;

use crate::api::AppState;

/// The operator routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(tenants::routes())
        .merge(plugins::routes())
        .merge(keys::routes())
        .merge(queue::routes())
}
