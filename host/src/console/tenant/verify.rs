//! Where receivers verify what the engine signs: the JWKS URL and copyable snippets for
//! Node (`jose`), Python (`joserfc`) and Rust (`josekit`).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};

use crate::api::AppState;
use crate::api::inproc::base_url;
use crate::console::layout::{self, Context, Section};
use crate::console::session::Session;
use crate::console::{PageError, tenant_scope};

pub fn routes() -> Router<AppState> {
    Router::new().route("/console/t/{tenant}/verify", get(page))
}

fn snippet(id: &str, title: &str, code: &str) -> Markup {
    html! {
        h2 { (title) }
        pre id=(id) { (code) }
        button.secondary.copy type="button" data-copy=(id) { "Copy" }
    }
}

async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    tenant_scope(&state, &session, &tenant)?;
    let jwks = format!("{}/.well-known/jwks.json", base_url(&headers));
    let node = format!(
        r#"import {{ createRemoteJWKSet, jwtVerify }} from "jose";

const jwks = createRemoteJWKSet(new URL("{jwks}"));

// body: the request body as text (content-type: application/jwt)
export async function verify(body) {{
  const {{ payload }} = await jwtVerify(body, jwks, {{
    // issuer: "https://webhooks.example.com", audience: "https://you.example.com",
  }});
  return payload; // {{ id, type, created_at, resource, data, iat, jti }}
}}"#
    );
    let python = format!(
        r#"import json, urllib.request
from joserfc import jwt
from joserfc.jwk import KeySet

keys = KeySet.import_key_set(json.load(urllib.request.urlopen("{jwks}")))

def verify(body: bytes) -> dict:
    token = jwt.decode(body.decode(), keys)  # checks the signature, by kid
    jwt.JWTClaimsRegistry().validate(token.claims)  # exp / nbf / iat
    return token.claims  # id, type, created_at, resource, data, iat, jti"#
    );
    let rust = format!(
        r#"// Cargo.toml: josekit = "0.10", reqwest = {{ version = "0.12", features = ["blocking", "json"] }}
use josekit::{{jwk::JwkSet, jwt}};

fn verify(body: &str) -> anyhow::Result<josekit::jwt::JwtPayload> {{
    let jwks: serde_json::Value = reqwest::blocking::get("{jwks}")?.json()?;
    let keys = JwkSet::from_map(jwks.as_object().cloned().unwrap_or_default())?;
    let header = jwt::decode_header(body)?;
    let kid = header.claim("kid").and_then(|k| k.as_str()).unwrap_or_default();
    let jwk = keys.get(kid).first().copied().ok_or_else(|| anyhow::anyhow!("unknown kid"))?;
    let verifier = josekit::jws::ES256.verifier_from_jwk(jwk)?; // the alg of your jws step
    let (payload, _) = jwt::decode_with_verifier(body, &verifier)?;
    Ok(payload)
}}"#
    );
    let context = Context::tenant(&session, &tenant, Section::Verify);
    let body = html! {
        h1 { "Verify webhooks" }
        p { "An endpoint with a " code { "jws" } " step receives the event as a signed JWT (" code { "content-type: application/jwt" } "). Verify it with the engine's public keys, published as a JWKS; keep fetching it (cache it briefly) so that rotated keys are picked up." }
        div.field {
            label for="jwks-url" { "JWKS URL" }
            input id="jwks-url" type="text" readonly value=(jwks);
            button.secondary.copy type="button" data-copy="jwks-url" { "Copy" }
        }
        (snippet("snippet-node", "Node.js (jose)", &node))
        (snippet("snippet-python", "Python (joserfc)", &python))
        (snippet("snippet-rust", "Rust (josekit)", &rust))
    };
    Ok(layout::page("Verify", &context, body).into_response())
}
