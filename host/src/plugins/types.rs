//! Plain host-side types exchanged with plugins.
//!
//! The rest of the host never sees the `bindgen!`-generated types: [`super::bindings`] converts
//! between them and these.

use serde::{Deserialize, Serialize};

/// An outgoing HTTP request: the webhook being delivered, or a token provider's call to its
/// token route.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HttpRequest {
    /// HTTP method, upper case (`POST`).
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Headers in order (names compared case-insensitively).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP response, as the host received it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes (cut at the host's response-size limit).
    pub body: Vec<u8>,
}

/// Where a plugin call happens: tenant, endpoint, event and attempt.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CallContext {
    /// The tenant's id.
    pub tenant: String,
    /// The endpoint's id.
    pub endpoint: String,
    /// The event's id (also the `webhook-id` header).
    pub event_id: String,
    /// The event's type (`invoice.paid`).
    pub event_type: String,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
    /// Unix seconds at which the attempt started.
    pub timestamp: u64,
}

/// What a plugin does; decides where it may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// Proves who is calling (API key, Basic, Bearer, JWS, HMAC signatures).
    Authentication,
    /// Protects the payload (JWE).
    Security,
    /// Changes the request in another way.
    Transform,
    /// Fetches tokens for `bearer` steps (serialised as `token-provider`).
    TokenProvider,
}

impl PluginKind {
    /// Whether plugins of this kind target the `step-plugin` world.
    pub fn is_step(self) -> bool {
        !matches!(self, PluginKind::TokenProvider)
    }

    /// The name as serialised (`authentication`, `token-provider`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Authentication => "authentication",
            PluginKind::Security => "security",
            PluginKind::Transform => "transform",
            PluginKind::TokenProvider => "token-provider",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plugin's description of itself (its `info()` export).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// Short name the plugin gives itself (informative; endpoints use the file name).
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// What the plugin does.
    pub kind: PluginKind,
    /// One line for humans.
    pub summary: String,
    /// JSON Schema of the plugin's `config` object (`null` if the plugin returned invalid JSON).
    pub config_schema: serde_json::Value,
}

/// A token fetched by a token provider.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The token, without the `Bearer ` prefix.
    pub value: String,
    /// Lifetime in seconds, when the token route said.
    pub expires_in_seconds: Option<u64>,
}

impl std::fmt::Debug for Token {
    // Never print the token itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires_in_seconds", &self.expires_in_seconds)
            .finish()
    }
}

/// Severity of a plugin's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warning.
    Warn,
    /// Error.
    Error,
}
