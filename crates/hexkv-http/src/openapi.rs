//! The OpenAPI 3.1 document of the REST API, generated from the handlers' annotations and the
//! response types (utoipa), served at `GET /openapi.json` and kept in `docs/openapi.json` (a test
//! fails when the two differ; `UPDATE_OPENAPI=1 cargo test -p hexkv-http openapi` rewrites it).

use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

/// An error: RFC 9457 problem details with a stable `code` and the request id.
#[allow(dead_code)] // A schema only: the body is built in `error.rs`.
#[derive(Serialize, ToSchema)]
#[schema(as = Problem)]
pub(crate) struct ProblemDoc {
    /// `urn:hexkv:problem:<code with dashes>`.
    #[serde(rename = "type")]
    kind: String,
    /// The HTTP reason phrase.
    title: String,
    /// The HTTP status.
    status: u16,
    /// The stable, machine-readable error code (`not_found`, `invalid_key`, `precondition_failed`,
    /// `value_too_large`, `unauthenticated`, `throttled`, `unavailable`…; see docs/api.md).
    code: String,
    /// A human-readable explanation.
    detail: String,
    /// The request's id (also in the `x-request-id` header).
    request_id: Option<String>,
    /// On 412 only: the key's current version, `null` when the key is absent.
    #[schema(nullable)]
    current_version: Option<u64>,
}

// The error answers several operations share, each with its problem `code`s. A response lists
// the codes it may carry, so a client (and the contract test) knows every status an operation
// answers; there is no catch-all `default`.

/// `unauthenticated`: API keys are configured and the request has no valid
/// `Authorization: Bearer <key>`.
#[allow(dead_code)] // A response only.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"hexkv\"`"))
)]
pub(crate) struct Unauthenticated(#[to_schema] ProblemDoc);

/// `permission_denied`: the key's role does not allow this, or the key (or the listed prefix)
/// lies outside the key's prefix.
#[allow(dead_code)] // A response only.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub(crate) struct PermissionDenied(#[to_schema] ProblemDoc);

/// `precondition_failed`: `If-Match` or `If-None-Match: *` does not hold; `current_version` is
/// the key's version now (`null`: absent). Nothing changed.
#[allow(dead_code)] // A response only.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub(crate) struct PreconditionFailed(#[to_schema] ProblemDoc);

/// `key_too_long`: the key is over 1024 bytes of UTF-8.
#[allow(dead_code)] // A response only.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub(crate) struct KeyTooLong(#[to_schema] ProblemDoc);

/// `throttled`: this client (its API key's name, else its address) is over
/// `limits.throttle_per_minute`. Nothing changed.
#[allow(dead_code)] // A response only.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds until a request will be admitted"))
)]
pub(crate) struct Throttled(#[to_schema] ProblemDoc);

/// `internal`: a bug; the cause is in the server log under the `request_id`, never here.
#[allow(dead_code)] // A response only.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub(crate) struct Internal(#[to_schema] ProblemDoc);

/// Refused, nothing changed: `overloaded` (more requests in flight than `limits.max_in_flight`),
/// `unavailable` (the store cannot take the write now), `read_only` (the `read_only` flag is on;
/// no `Retry-After`). Or `outcome_unknown`: the write was handed to the store and its answer was
/// lost, so it may or may not have been applied.
#[allow(dead_code)] // A response only.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
)]
pub(crate) struct WriteUnavailable(#[to_schema] ProblemDoc);

/// `outcome_unknown`: the write ran past `limits.request_timeout_ms` and was cancelled; the store
/// may still apply it.
#[allow(dead_code)] // A response only.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub(crate) struct WriteTimedOut(#[to_schema] ProblemDoc);

/// One readiness check.
#[allow(dead_code)] // A schema only.
#[derive(Serialize, ToSchema)]
#[schema(as = Check)]
pub(crate) struct CheckDoc {
    /// What was checked (`store`, `draining`).
    name: String,
    /// Whether it passed.
    ok: bool,
    /// Why it failed.
    detail: Option<String>,
}

/// The body of `/healthz` and `/readyz`.
#[allow(dead_code)] // A schema only.
#[derive(Serialize, ToSchema)]
#[schema(as = Health)]
pub(crate) struct HealthDoc {
    /// `ok` (`/healthz`), `ready` or `not_ready` (`/readyz`).
    status: String,
    /// The checks that decided readiness (`/readyz`).
    checks: Option<Vec<CheckDoc>>,
}

/// Writes what the attributes cannot hold: the listing cursor's pattern and length, from the code
/// that parses cursors.
struct CursorFormat;

impl Modify for CursorFormat {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{RefOr, Schema};
        let Some(list) = openapi.paths.paths.get_mut("/v1/kv") else {
            return;
        };
        let Some(get) = list.get.as_mut() else {
            return;
        };
        for parameter in get.parameters.iter_mut().flatten() {
            if parameter.name == "cursor" {
                parameter.schema = Some(RefOr::T(Schema::Object(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(hexkv_core::Cursor::PATTERN))
                        .min_length(Some(3))
                        .max_length(Some(hexkv_core::Cursor::MAX_LEN))
                        .build(),
                )));
            }
        }
    }
}

/// Declares the bearer scheme and applies it to the key-value routes.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "hexkv",
        description = "A durable key-value store. Keys are UTF-8 strings of 1 to 1024 bytes \
                       without control characters (a key may contain `/`; in a path, `%2F` works \
                       too); values are raw bytes. Every write gets a store-wide, increasing \
                       version, returned as a strong `ETag`. Errors are `application/problem+json` \
                       with a stable `code`. When API keys are configured, the key-value routes \
                       need `Authorization: Bearer <key>` (docs/security.md).",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        crate::kv::get_value,
        crate::kv::put_value,
        crate::kv::delete_value,
        crate::kv::list_keys,
        crate::operations::healthz,
        crate::operations::readyz,
        crate::operations::metrics,
        crate::operations::openapi_json,
    ),
    components(
        schemas(ProblemDoc, HealthDoc, CheckDoc, crate::kv::Written, crate::kv::Item, crate::kv::Listing),
        responses(Unauthenticated, PermissionDenied, PreconditionFailed, KeyTooLong, Throttled, Internal, WriteUnavailable, WriteTimedOut),
    ),
    modifiers(&BearerAuth, &CursorFormat),
    tags(
        (name = "kv", description = "Keys and values"),
        (name = "operations", description = "Probes, metrics and this document"),
    ),
)]
pub struct ApiDoc;

/// The document as pretty JSON (what `docs/openapi.json` holds).
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` is the document the code generates.
    #[test]
    fn docs_openapi_json_matches_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let generated = document() + "\n";
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).expect("write docs/openapi.json");
        }
        let kept = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            kept == generated,
            "docs/openapi.json differs from the code's document; run \
             `UPDATE_OPENAPI=1 cargo test -p hexkv-http openapi` and commit the file"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_route() {
        let json: serde_json::Value = serde_json::from_str(&document()).unwrap();
        assert!(json["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/v1/kv/{key}",
            "/v1/kv",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(json["paths"][path].is_object(), "{path} missing");
        }
        let key_ops = &json["paths"]["/v1/kv/{key}"];
        for method in ["get", "put", "delete"] {
            assert!(key_ops[method].is_object(), "{method} missing");
        }
    }
}
