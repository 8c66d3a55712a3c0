//! Completes the generated OpenAPI document with what every route shares, so that no route can
//! forget it: the error statuses each kind of route can answer, all with the JSON error shape.
//!
//! - every route that needs a token: 401 (no or bad token), 403 (a tenant token on an operator
//!   route, or on another tenant);
//! - every route with a path parameter: 404 (an unknown tenant, endpoint, event, ...) and 422
//!   (a malformed id);
//! - every route with a request body: 400 (malformed body), 413 (too large), 415 (wrong content
//!   type), 422 (a field is wrong);
//! - every route: 503 when the store is unavailable or the engine is shutting down, and 408
//!   when the request is not sent in time.

use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};

/// The [`utoipa::Modify`] that adds the shared error answers.
pub struct CommonResponses;

fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

fn add(operation: &mut Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| error_response(description));
}

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let has_path_params = path.contains('{');
            let public =
                path == "/healthz" || path == "/metrics" || path == "/.well-known/jwks.json";
            let operations = [
                item.get.as_mut(),
                item.put.as_mut(),
                item.post.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ];
            for operation in operations.into_iter().flatten() {
                if !public {
                    add(operation, "401", "Missing or invalid token");
                    add(operation, "403", "The token may not do this");
                }
                if has_path_params {
                    add(operation, "404", "Not found (or another tenant's)");
                    add(operation, "422", "A path parameter or field is invalid");
                }
                if operation.request_body.is_some() {
                    add(operation, "400", "The body is malformed");
                    add(operation, "413", "The body is too large");
                    add(operation, "415", "Unsupported content type");
                    add(operation, "422", "A field is invalid");
                }
                add(operation, "408", "The request was not sent in time");
                add(
                    operation,
                    "503",
                    "The store is unavailable or the engine is stopping",
                );
            }
        }
    }
}
