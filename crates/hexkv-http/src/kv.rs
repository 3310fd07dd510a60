//! The key-value handlers: `GET`/`PUT`/`DELETE /v1/kv/{key}` and `GET /v1/kv`.
//!
//! Each handler parses its inputs into domain types (the key from the raw path, the precondition
//! from the headers, the query into a [`ListQuery`]) and then trusts them. The key is taken from
//! the raw URI path and percent-decoded here, not by the router, so that invalid UTF-8 and control
//! characters get their own precise errors and `%2F` works like `/`.

use std::borrow::Cow;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hexkv_core::{Cursor, Entry, Key, KeyError, ListQuery, Page, Precondition, Value, Version};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;
use crate::openapi::ProblemDoc;

/// The path every key lives under.
pub(crate) const KV_PREFIX: &str = "/v1/kv/";

/// The body of a successful `PUT`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Written {
    /// The key written.
    #[schema(value_type = String)]
    key: Key,
    /// The version the write was given (also the `ETag`).
    #[schema(value_type = u64, minimum = 1)]
    version: Version,
}

/// One item of a listing.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Item<'a> {
    /// The key.
    #[schema(value_type = String)]
    key: &'a Key,
    /// Its version.
    #[schema(value_type = u64, minimum = 1)]
    version: Version,
}

/// The body of `GET /v1/kv`: one page of keys in byte order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Listing<'a> {
    /// The keys and their versions.
    items: Vec<Item<'a>>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// The bytes of the key the route's `{*key}` wildcard matched: everything after `/v1/kv/`,
/// percent-decoded. Borrowed unless the path holds escapes: most keys are read without a copy.
///
/// Read from the raw path rather than decoded by the router, so that invalid UTF-8 and control
/// characters get their own precise errors from [`Key::from_bytes`].
fn key_bytes(uri: &Uri) -> Cow<'_, [u8]> {
    let raw = uri.path().strip_prefix(KV_PREFIX).unwrap_or_default();
    percent_decode_str(raw).into()
}

/// The key named by the request path.
fn key_from_uri(uri: &Uri) -> Result<Key, ApiError> {
    Ok(Key::from_bytes(&key_bytes(uri))?)
}

/// The key a request of `/v1/kv/{key}` touches, for its access check.
pub(crate) fn key_of(request: &Request) -> Cow<'_, [u8]> {
    key_bytes(request.uri())
}

/// The prefix a listing touches, for its access check. A malformed query is the handler's 400 to
/// give; for the scope check it lists everything, which a key confined to a prefix may not.
pub(crate) fn prefix_of(request: &Request) -> Cow<'_, [u8]> {
    list_query(request.uri().query())
        .map(|q| Cow::Owned(q.prefix().as_bytes().to_vec()))
        .unwrap_or_default()
}

/// `"<version>"`, formatted without the formatting machinery (it runs on every GET and PUT).
fn etag(version: Version) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(version.get());
    let mut tag = [b'"'; 22];
    tag[1..=digits.len()].copy_from_slice(digits.as_bytes());
    HeaderValue::from_bytes(&tag[..digits.len() + 2]).expect("digits and quotes are valid")
}

/// Characters escaped when a key is put back into a URL (`Location`): controls, space and the
/// characters with a meaning in URLs other than `/`.
const PATH_ESCAPES: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// The single value of a header that must not repeat, as text.
fn single_header<'a>(
    headers: &'a HeaderMap,
    name: header::HeaderName,
    label: &'static str,
) -> Result<Option<&'a str>, ApiError> {
    let mut values = headers.get_all(&name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let bad = |reason: &str| ApiError::Header {
        name: label,
        reason: reason.to_owned(),
    };
    if values.next().is_some() {
        return Err(bad("must appear at most once"));
    }
    let text = first.to_str().map_err(|_| bad("must be visible ASCII"))?;
    Ok(Some(text.trim()))
}

/// Parses one strong entity tag, `"<version>"`.
fn parse_etag(text: &str, label: &'static str) -> Result<Version, ApiError> {
    let bad = |reason: String| ApiError::Header {
        name: label,
        reason,
    };
    if text.starts_with("W/") {
        return Err(bad(
            "weak entity tags are not supported; send the ETag exactly as received".into(),
        ));
    }
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or_else(|| {
            bad(format!(
                "expected a quoted version like \"42\", got {text:?}"
            ))
        })?;
    if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!(
            "expected a quoted version like \"42\", got {text:?}"
        )));
    }
    inner
        .parse::<Version>()
        .map_err(|_| bad(format!("version {inner} is out of range")))
}

/// The write precondition carried by `If-Match` / `If-None-Match`.
///
/// - `If-Match: "<v>"`: compare-and-swap on version `v`.
/// - `If-None-Match: *` (PUT only): create only.
/// - both (PUT): a precondition that cannot hold — `If-Match` needs the key to exist, `If-None-Match:
///   *` needs it absent — so, as RFC 9110 evaluates them (13.2.2), the answer is 412: `None`.
fn write_precondition(
    headers: &HeaderMap,
    allow_create_only: bool,
) -> Result<Option<Precondition>, ApiError> {
    let if_match = single_header(headers, header::IF_MATCH, "If-Match")?;
    let if_none_match = single_header(headers, header::IF_NONE_MATCH, "If-None-Match")?;
    let if_match = match if_match {
        Some("*") => {
            return Err(ApiError::Header {
                name: "If-Match",
                reason: "`*` is not supported; send the version to compare with, like \"42\""
                    .into(),
            });
        }
        Some(tag) => Some(parse_etag(tag, "If-Match")?),
        None => None,
    };
    let create_only = match if_none_match {
        Some("*") if allow_create_only => true,
        Some(_) => {
            return Err(ApiError::Header {
                name: "If-None-Match",
                reason: if allow_create_only {
                    "only `*` (create only) is supported on writes".into()
                } else {
                    "not supported on DELETE".into()
                },
            });
        }
        None => false,
    };
    Ok(match (if_match, create_only) {
        (Some(_), true) => None,
        (Some(version), false) => Some(Precondition::Version(version)),
        (None, true) => Some(Precondition::Absent),
        (None, false) => Some(Precondition::None),
    })
}

/// The 412 of a precondition that cannot hold, with the key's current version.
async fn never_holds(state: &AppState, key: &Key) -> ApiError {
    match state.api.get(key).await {
        Ok(entry) => hexkv_core::KvError::PreconditionFailed {
            current: Some(entry.version),
        }
        .into(),
        Err(hexkv_core::KvError::NotFound) => {
            hexkv_core::KvError::PreconditionFailed { current: None }.into()
        }
        Err(err) => err.into(),
    }
}

/// Whether a GET's `If-None-Match` matches the current version (then 304 Not Modified).
/// Comparison is weak, as RFC 9110 says for `If-None-Match`: `W/"7"` matches version 7.
fn not_modified(headers: &HeaderMap, current: Version) -> Result<bool, ApiError> {
    let Some(list) = single_header(headers, header::IF_NONE_MATCH, "If-None-Match")? else {
        return Ok(false);
    };
    if list == "*" {
        return Ok(true);
    }
    for tag in list.split(',').map(str::trim) {
        let strong = tag.strip_prefix("W/").unwrap_or(tag);
        if parse_etag(strong, "If-None-Match")? == current {
            return Ok(true);
        }
    }
    Ok(false)
}

// The handlers take the whole `Request` and borrow its URI and headers, rather than extracting
// `Uri` and `HeaderMap`, which would clone both on every request.

/// `GET /v1/kv/{key}`: the raw value, with its version as `ETag`.
#[utoipa::path(
    get,
    path = "/v1/kv/{key}",
    tag = "kv",
    params(
        ("key" = String, Path, min_length = 1, max_length = 1024, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$",
            description = "The key, percent-encoded; it may contain `/`. 1 to 1024 **bytes** of UTF-8 without control characters: JSON Schema counts characters, so a key of at most 1024 characters whose UTF-8 is longer than 1024 bytes gets 414 `key_too_long`"),
        ("If-None-Match" = Option<String>, Header, nullable = false,
            pattern = r#"^\s*(\*|(W/)?"[0-9]{1,19}"(\s*,\s*(W/)?"[0-9]{1,19}")*)\s*$"#,
            description = "Entity tags (`\"<version>\"`, weak ones too) or `*`: 304 when one is the current version"),
    ),
    responses(
        (status = 200, description = "The value, byte-exact", content_type = "application/octet-stream", body = String,
            headers(("ETag" = String, description = "The version, quoted: `\"42\"`"))),
        (status = 304, description = "The version in `If-None-Match` is current",
            headers(("ETag" = String, description = "The version, quoted"))),
        (status = 400, description = "`invalid_key` (a control character, invalid UTF-8 after percent-decoding), `invalid_header` (a malformed or repeated `If-None-Match`)",
            content_type = "application/problem+json", body = ProblemDoc),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, response = crate::openapi::PermissionDenied),
        (status = 404, description = "`not_found`: the key does not exist", content_type = "application/problem+json", body = ProblemDoc),
        (status = 414, response = crate::openapi::KeyTooLong),
        (status = 429, response = crate::openapi::Throttled),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, description = "Refused, nothing changed: `overloaded` (more requests in flight than `limits.max_in_flight`), `unavailable` (the store cannot answer now)",
            content_type = "application/problem+json", body = ProblemDoc,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 504, description = "`deadline_exceeded`: the read ran past `limits.request_timeout_ms` and was cancelled",
            content_type = "application/problem+json", body = ProblemDoc),
    ),
    security((), ("api_key" = [])),
)]
pub(crate) async fn get_value(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let key = key_from_uri(request.uri())?;
    let Entry { value, version, .. } = state.api.get(&key).await?;
    if not_modified(request.headers(), version)? {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag(version))]).into_response());
    }
    Ok((
        [
            (header::ETAG, etag(version)),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
        ],
        Body::from(value.into_bytes()),
    )
        .into_response())
}

/// `PUT /v1/kv/{key}`: writes the raw body; 201 when created, 200 when replaced.
#[utoipa::path(
    put,
    path = "/v1/kv/{key}",
    tag = "kv",
    params(
        ("key" = String, Path, min_length = 1, max_length = 1024, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$",
            description = "The key, percent-encoded; it may contain `/`. 1 to 1024 **bytes** of UTF-8 without control characters: JSON Schema counts characters, so a key of at most 1024 characters whose UTF-8 is longer than 1024 bytes gets 414 `key_too_long`"),
        ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^\s*"[0-9]{1,19}"\s*$"#,
            description = "`\"<version>\"`: write only if it is the current version (with `If-None-Match: *` too, the write can never happen: 412)"),
        ("If-None-Match" = Option<String>, Header, nullable = false, pattern = r"^\s*\*\s*$",
            description = "`*`: write only if the key does not exist"),
    ),
    request_body(content = String, content_type = "application/octet-stream",
        description = "The value, raw bytes (at most `limits.max_value_bytes`)"),
    responses(
        (status = 200, description = "Replaced", body = Written,
            headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 201, description = "Created", body = Written,
            headers(("ETag" = String, description = "The new version, quoted"),
                    ("Location" = String, description = "The key's URL path"))),
        (status = 400, description = "`invalid_key`; `invalid_header` (a malformed, repeated or unsupported `If-Match`/`If-None-Match`, or both); `invalid_body` (the body could not be read)",
            content_type = "application/problem+json", body = ProblemDoc),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, response = crate::openapi::PermissionDenied),
        (status = 412, response = crate::openapi::PreconditionFailed),
        (status = 413, description = "`value_too_large`: the body is over `limits.max_value_bytes`", content_type = "application/problem+json", body = ProblemDoc),
        (status = 414, response = crate::openapi::KeyTooLong),
        (status = 429, response = crate::openapi::Throttled),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::WriteUnavailable),
        (status = 504, response = crate::openapi::WriteTimedOut),
    ),
    security((), ("api_key" = [])),
)]
pub(crate) async fn put_value(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let key = key_from_uri(request.uri())?;
    let Some(precondition) = write_precondition(request.headers(), true)? else {
        return Err(never_holds(&state, &key).await);
    };
    // Reading the body last means a bad key or header is reported without reading the value.
    let value = Value::from(Bytes::from_request(request, &state).await?);
    let outcome = state.api.put(key.clone(), value, precondition).await?;
    let mut response_headers = HeaderMap::new();
    response_headers.insert(header::ETAG, etag(outcome.version));
    let status = if outcome.created {
        let location = format!(
            "{KV_PREFIX}{}",
            utf8_percent_encode(key.as_str(), PATH_ESCAPES)
        );
        if let Ok(location) = HeaderValue::from_str(&location) {
            response_headers.insert(header::LOCATION, location);
        }
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = Written {
        key,
        version: outcome.version,
    };
    Ok((status, response_headers, Json(body)).into_response())
}

/// `DELETE /v1/kv/{key}`: 204 whether or not the key existed, unless `If-Match` fails.
#[utoipa::path(
    delete,
    path = "/v1/kv/{key}",
    tag = "kv",
    params(
        ("key" = String, Path, min_length = 1, max_length = 1024, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$",
            description = "The key, percent-encoded; it may contain `/`. 1 to 1024 **bytes** of UTF-8 without control characters: JSON Schema counts characters, so a key of at most 1024 characters whose UTF-8 is longer than 1024 bytes gets 414 `key_too_long`"),
        ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^\s*"[0-9]{1,19}"\s*$"#,
            description = "`\"<version>\"`: delete only if it is the current version"),
    ),
    responses(
        (status = 204, description = "Deleted, or already absent"),
        (status = 400, description = "`invalid_key`; `invalid_header` (a malformed or repeated `If-Match`, or an `If-None-Match`)",
            content_type = "application/problem+json", body = ProblemDoc),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, response = crate::openapi::PermissionDenied),
        (status = 412, response = crate::openapi::PreconditionFailed),
        (status = 414, response = crate::openapi::KeyTooLong),
        (status = 429, response = crate::openapi::Throttled),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::WriteUnavailable),
        (status = 504, response = crate::openapi::WriteTimedOut),
    ),
    security((), ("api_key" = [])),
)]
pub(crate) async fn delete_value(
    State(state): State<AppState>,
    request: Request,
) -> Result<StatusCode, ApiError> {
    let key = key_from_uri(request.uri())?;
    let Some(precondition) = write_precondition(request.headers(), false)? else {
        return Err(never_holds(&state, &key).await);
    };
    state.api.delete(&key, precondition).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Any method on `/v1/kv/` (a key of zero bytes).
pub(crate) async fn empty_key() -> ApiError {
    KeyError::Empty.into()
}

/// The listing parameters, decoded strictly: repeated or non-UTF-8 parameters are errors.
pub(crate) fn list_query(raw: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut prefix: Option<String> = None;
    let mut limit: Option<u64> = None;
    let mut cursor: Option<Cursor> = None;
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |reason: &str| ApiError::Query {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        let value = value.replace('+', " ");
        let value = percent_decode_str(&value)
            .decode_utf8()
            .map_err(|_| bad("not valid UTF-8 after percent-decoding"))?
            .into_owned();
        let repeated = match name {
            "prefix" => prefix.replace(value).is_some(),
            "limit" => {
                let n = value
                    .parse::<u64>()
                    .map_err(|_| bad("must be a whole number"))?;
                limit.replace(n).is_some()
            }
            "cursor" => cursor
                .replace(Cursor::decode(&value).map_err(hexkv_core::KvError::from)?)
                .is_some(),
            _ => false, // Unknown parameters are ignored, so clients can add their own.
        };
        if repeated {
            return Err(bad("must appear at most once"));
        }
    }
    Ok(ListQuery::new(prefix.unwrap_or_default(), limit, cursor)
        .map_err(hexkv_core::KvError::from)?)
}

/// `GET /v1/kv?prefix=&limit=&cursor=`: one page of keys and versions.
#[utoipa::path(
    get,
    path = "/v1/kv",
    tag = "kv",
    params(
        ("prefix" = Option<String>, Query, max_length = 1024, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
            description = "Only keys starting with this: UTF-8 without control characters, at most 1024 characters (one longer than a key's 1024 bytes matches nothing)"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Keys per page (default 100)"),
        ("cursor" = Option<String>, Query,
            description = "`next_cursor` of the previous page, as given. Opaque: every string of this pattern and length is a cursor (it names the key the page starts after), and nothing else is"),
    ),
    responses(
        (status = 200, description = "One page of keys in byte order", body = Listing),
        (status = 400, description = "`invalid_query`: a `limit` out of range, a malformed `cursor` or `prefix`, a parameter that is repeated or not UTF-8",
            content_type = "application/problem+json", body = ProblemDoc),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, response = crate::openapi::PermissionDenied),
        (status = 404, description = "`feature_disabled`: the `list_keys` feature flag is off for this client", content_type = "application/problem+json", body = ProblemDoc),
        (status = 429, response = crate::openapi::Throttled),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, description = "Refused, nothing changed: `overloaded`, `unavailable`",
            content_type = "application/problem+json", body = ProblemDoc,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 504, description = "`deadline_exceeded`: the listing ran past `limits.request_timeout_ms` and was cancelled",
            content_type = "application/problem+json", body = ProblemDoc),
    ),
    security((), ("api_key" = [])),
)]
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let query = list_query(request.uri().query())?;
    let Page { items, next_cursor } = state
        .api
        .list(&query, &hexkv_platform::http::access::identity(&request))
        .await?;
    let listing = Listing {
        items: items
            .iter()
            .map(|i| Item {
                key: &i.key,
                version: i.version,
            })
            .collect(),
        next_cursor: next_cursor.map(|c| c.encode()),
    };
    Ok(Json(listing).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_quote_the_version_at_every_length() {
        for version in [1, 9, 10, 42, 1_000_000, u64::MAX] {
            assert_eq!(
                etag(Version::new(version)),
                format!("\"{version}\"").as_str()
            );
        }
    }

    #[test]
    fn keys_come_from_the_path_percent_decoded() {
        let key = |path: &str| key_from_uri(&path.parse::<Uri>().unwrap());
        assert_eq!(key("/v1/kv/users/42").unwrap().as_str(), "users/42");
        assert_eq!(key("/v1/kv/a%2Fb%20c").unwrap().as_str(), "a/b c");
        assert_eq!(key("/v1/kv/%C3%A9t%C3%A9").unwrap().as_str(), "été");
        assert!(matches!(
            key("/v1/kv/a%FFb"),
            Err(ApiError::Kv(hexkv_core::KvError::InvalidKey(
                KeyError::NotUtf8 { valid_up_to: 1 }
            )))
        ));
        assert!(matches!(
            key("/v1/kv/a%0Ab"),
            Err(ApiError::Kv(hexkv_core::KvError::InvalidKey(
                KeyError::ControlCharacter { index: 1 }
            )))
        ));
    }
}
