//! The page shell every console page shares (head, navigation, who is signed in, logout) and
//! the error pages. Everything user-provided is rendered through maud's escaping; nothing here
//! takes `PreEscaped` input.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::session::{Session, Who};

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// A tenant's endpoints.
    Endpoints,
    /// A tenant's message log.
    Messages,
    /// A tenant's client certificates.
    Certificates,
    /// A tenant's plugins.
    TenantPlugins,
    /// Where to verify signatures.
    Verify,
    /// Operator: tenants.
    Tenants,
    /// Operator: plugins.
    Plugins,
    /// Operator: signing keys.
    Keys,
    /// Operator: queue and rates.
    Queue,
    /// Outside the navigation (sign-in, errors).
    None,
}

/// The tenant whose pages the navigation links to, when there is one.
pub struct Context<'a> {
    /// The signed-in session, if any.
    pub session: Option<&'a Session>,
    /// The tenant whose pages these are.
    pub tenant: Option<&'a str>,
    /// The current section.
    pub section: Section,
}

impl<'a> Context<'a> {
    /// A page of `tenant`'s, in `section`.
    pub fn tenant(session: &'a Session, tenant: &'a str, section: Section) -> Self {
        Self {
            session: Some(session),
            tenant: Some(tenant),
            section,
        }
    }

    /// A page outside any session (sign-in, errors).
    pub fn anonymous() -> Self {
        Self {
            session: None,
            tenant: None,
            section: Section::None,
        }
    }

    /// An operator page, in `section`.
    pub fn operator(session: &'a Session, section: Section) -> Self {
        Self {
            session: Some(session),
            tenant: None,
            section,
        }
    }
}

fn nav_item(href: &str, label: &str, current: bool) -> Markup {
    html! {
        li { a href=(href) aria-current=[current.then_some("page")] { (label) } }
    }
}

/// A whole page.
pub fn page(title: &str, context: &Context<'_>, body: Markup) -> Markup {
    let section = context.section;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · wasmhook console" }
                link rel="stylesheet" href="/console/assets/app.css";
                script src="/console/assets/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console/" { "wasmhook" }
                    @if let Some(session) = context.session {
                        nav aria-label="Main" {
                            ul {
                                @if let Some(tenant) = context.tenant {
                                    (nav_item(&format!("/console/t/{tenant}/endpoints"), "Endpoints", section == Section::Endpoints))
                                    (nav_item(&format!("/console/t/{tenant}/events"), "Messages", section == Section::Messages))
                                    (nav_item(&format!("/console/t/{tenant}/certificates"), "Client certificates", section == Section::Certificates))
                                    (nav_item(&format!("/console/t/{tenant}/plugins"), "Plugins", section == Section::TenantPlugins))
                                    (nav_item(&format!("/console/t/{tenant}/verify"), "Verify", section == Section::Verify))
                                }
                                @if session.is_operator() {
                                    (nav_item("/console/admin/tenants", "Tenants", section == Section::Tenants))
                                    (nav_item("/console/admin/plugins", "All plugins", section == Section::Plugins))
                                    (nav_item("/console/admin/keys", "Signing keys", section == Section::Keys))
                                    (nav_item("/console/admin/queue", "Queue", section == Section::Queue))
                                }
                            }
                        }
                        div.who {
                            span {
                                @match &session.who {
                                    Who::Operator => "Operator",
                                    Who::Tenant(id) => { "Tenant " strong { (id) } },
                                }
                                @if session.read_only { " (read-only)" }
                            }
                            form method="post" action="/console/logout" {
                                input type="hidden" name="_csrf" value=(session.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" {
                    (body)
                }
            }
        }
    }
}

/// A page saying what went wrong, with its status.
pub fn error_page(status: StatusCode, message: &str, session: Option<&Session>) -> Response {
    let context = Context {
        session,
        ..Context::anonymous()
    };
    let title = status.canonical_reason().unwrap_or("Error");
    let body = html! {
        h1 { (status.as_u16()) " " (title) }
        p { (message) }
        p { a href="/console/" { "Back to the console" } }
    };
    (status, page(title, &context, body)).into_response()
}

/// A short confirmation shown after an action (fixed texts by code, never echoed input).
pub fn notice(code: Option<&str>) -> Markup {
    let text = match code.unwrap_or("") {
        "saved" => "Saved.",
        "created" => "Created.",
        "deleted" => "Deleted.",
        "replayed" => "Replay queued: the delivery is pending again.",
        "uploaded" => "Uploaded.",
        "rotated" => "Keys rotated.",
        "sent" => "Test event sent.",
        "recovered" => "Recovery queued.",
        _ => "",
    };
    html! {
        @if !text.is_empty() { p.notice role="status" { (text) } }
    }
}

/// A hidden CSRF field.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="_csrf" value=(session.csrf); }
}

/// A time (Unix seconds) in UTC, to the second.
pub fn time(unix: i64) -> String {
    let text = crate::model::rfc3339(unix);
    text.replace('T', " ").replace('Z', " UTC")
}

/// A time given in Unix milliseconds.
pub fn time_ms(unix_ms: i64) -> String {
    time(unix_ms.div_euclid(1000))
}
