//! Every plugin: built-in, from the plugin directory, and each tenant's; version, hash, status
//! and last load error. The table follows directory reloads as they happen (a live region the
//! console's script refreshes every 2 s).

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::html;

use crate::api::AppState;
use crate::console::layout::{self, Context, Section};
use crate::console::session::Session;
use crate::console::{PageError, operator_only};
use crate::plugins::{PluginSource, PluginState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/console/admin/plugins", get(list))
}

async fn list(State(state): State<AppState>, session: Session) -> Result<Response, PageError> {
    operator_only(&session)?;
    let registry = &state.engine.registry;
    let mut plugins = registry.list(None);
    for tenant in state.engine.store.directory().tenants() {
        plugins.extend(registry.list(Some(&tenant.id)));
    }
    let context = Context::operator(&session, Section::Plugins);
    let body = html! {
        h1 { "Plugins" }
        p { "Directory plugins reload as their files change (" code { (state.engine.config.plugins_dir().display().to_string()) } "); this table follows them as they do." }
        div.table-wrap id="plugins-live" data-live="2000" aria-live="polite" { table {
            caption.skip { "Plugins" }
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Source" } th scope="col" { "Kind" } th scope="col" { "Version" }
                th scope="col" { "Status" } th scope="col" { "Last error" } th.hide-narrow scope="col" { "SHA-256" } th.hide-narrow scope="col" { "Loaded" }
            } }
            tbody { @for p in &plugins {
                tr {
                    td { code { (p.name) } }
                    td { @match &p.source {
                        PluginSource::BuiltIn => { "built-in" },
                        PluginSource::Directory => { "directory" },
                        PluginSource::Tenant(t) => { "tenant " code { (t) } },
                    } }
                    td { (p.info.as_ref().map(|i| i.kind.as_str()).unwrap_or("—")) }
                    td { (p.info.as_ref().map(|i| i.version.as_str()).unwrap_or("—")) }
                    td {
                        @match p.status { PluginState::Ready => { span.badge.ok { "ready" } }, PluginState::Failed => { span.badge.bad { "failed" } } }
                        @if p.status == PluginState::Failed && p.live { " " span.badge.muted { "previous version serving" } }
                    }
                    td { (p.last_error.as_deref().unwrap_or("")) }
                    td.hide-narrow.mono { (p.sha256.as_deref().map(|h| &h[..h.len().min(16)]).unwrap_or("")) }
                    td.hide-narrow { (layout::time(p.loaded_at)) }
                }
            } }
        } }
    };
    Ok(layout::page("Plugins", &context, body).into_response())
}
