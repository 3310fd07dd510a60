//! The HTTP transport (feature `http`): the REST API of `docs/api.md` over reqwest.
//!
//! Errors are read from the `application/problem+json` body (`code`, `detail`,
//! `current_version`) and the `Retry-After` header, so a caller sees the same [`ClientError`]s as
//! over gRPC.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hexkv_core::{Precondition, Version};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};
use serde::Deserialize;
use tonic::Code;

use crate::error::error_chain;
use crate::{ClientError, ClientOptions, Entry, Page, Written};

/// Everything but the unreserved characters of RFC 3986 is escaped, `/` included: the server
/// decodes `%2F` back to `/`, and an escaped key has no `/`-separated `..` segment for URL
/// normalisation to collapse.
const KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Clone)]
pub(crate) struct HttpTransport {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    max_body: usize,
    /// `Bearer <key>`, sent as the `Authorization` header of every request.
    pub(crate) authorization: Option<reqwest::header::HeaderValue>,
}

#[derive(Deserialize)]
struct WriteBody {
    version: u64,
}

#[derive(Deserialize)]
struct ListBody {
    items: Vec<ListItem>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct ListItem {
    key: String,
    version: u64,
}

/// The members of a problem body the client reads.
#[derive(Deserialize, Default)]
struct Problem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    detail: String,
    /// Present (possibly `null`) on 412 only.
    #[serde(default, deserialize_with = "present")]
    current_version: Option<Option<u64>>,
}

/// Tells a `null` member (`Some(None)`) from a missing one (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

impl HttpTransport {
    pub(crate) fn new(base_url: String, options: &ClientOptions) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base)
            .map_err(|e| ClientError::Connect(format!("invalid endpoint {base_url:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::Connect(format!(
                "invalid endpoint {base_url:?}: the scheme must be http"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(options.timeout)
            .build()
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        Ok(Self {
            http,
            base,
            timeout: options.timeout,
            max_body: options.max_message_bytes,
            authorization: None,
        })
    }

    fn key_url(&self, key: &str) -> Result<String, ClientError> {
        // URL parsing treats `.`, `..`, `%2e` and `%2e%2e` as dot segments and removes them, so
        // these two keys cannot be named in a URL.
        if key == "." || key == ".." {
            return Err(ClientError::InvalidArgument {
                field: "key".into(),
                message: format!("the key {key:?} cannot be addressed over HTTP; use gRPC"),
            });
        }
        Ok(format!(
            "{}/v1/kv/{}",
            self.base,
            utf8_percent_encode(key, KEY)
        ))
    }

    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let mut request = self.http.request(method, url).timeout(self.timeout);
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        #[cfg(feature = "otlp")]
        let request = request.headers(crate::trace_context::http_headers());
        request
    }

    /// Sends one attempt; a non-success status becomes its [`ClientError`].
    async fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request.send().await.map_err(transport_error)?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.error(response).await)
        }
    }

    /// Reads a body, refusing one over the size limit.
    async fn body(&self, mut response: Response) -> Result<Bytes, ClientError> {
        if response
            .content_length()
            .is_some_and(|len| len > self.max_body as u64)
        {
            return Err(too_large(self.max_body));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > self.max_body {
                return Err(too_large(self.max_body));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        response: Response,
    ) -> Result<T, ClientError> {
        let body = self.body(response).await?;
        serde_json::from_slice(&body)
            .map_err(|e| ClientError::protocol(format!("unreadable response body: {e}")))
    }

    async fn error(&self, response: Response) -> ClientError {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let problem: Problem = match self.body(response).await {
            Ok(body) => serde_json::from_slice(&body).unwrap_or_default(),
            Err(_) => Problem::default(),
        };
        problem_error(status, retry_after, problem)
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Entry, ClientError> {
        let url = self.key_url(key)?;
        let response = self.send(self.request(Method::GET, &url)).await?;
        let version = etag(&response)?;
        let value = self.body(response).await?;
        Ok(Entry {
            key: key.to_owned(),
            value,
            version,
        })
    }

    pub(crate) async fn put(
        &self,
        key: &str,
        value: &Bytes,
        precondition: Precondition,
    ) -> Result<Written, ClientError> {
        let url = self.key_url(key)?;
        let request = with_precondition(self.request(Method::PUT, &url), precondition)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(value.clone());
        let response = self.send(request).await?;
        let created = response.status() == StatusCode::CREATED;
        let body: WriteBody = self.json(response).await?;
        Ok(Written {
            version: Version::new(body.version),
            created,
        })
    }

    pub(crate) async fn delete(
        &self,
        key: &str,
        precondition: Precondition,
    ) -> Result<Option<bool>, ClientError> {
        let url = self.key_url(key)?;
        let request = with_precondition(self.request(Method::DELETE, &url), precondition);
        self.send(request).await?;
        // The REST API answers 204 whether or not the key existed.
        Ok(None)
    }

    pub(crate) async fn list(
        &self,
        prefix: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page, ClientError> {
        let mut url = reqwest::Url::parse(&format!("{}/v1/kv", self.base))
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("prefix", prefix);
            if limit > 0 {
                query.append_pair("limit", &limit.to_string());
            }
            if let Some(cursor) = cursor {
                query.append_pair("cursor", cursor);
            }
        }
        let request = self.http.get(url).timeout(self.timeout);
        let body: ListBody = self.json(self.send(request).await?).await?;
        Ok(Page {
            items: body
                .items
                .into_iter()
                .map(|i| (i.key, Version::new(i.version)))
                .collect(),
            next_cursor: body.next_cursor,
        })
    }
}

fn with_precondition(request: RequestBuilder, precondition: Precondition) -> RequestBuilder {
    match precondition {
        Precondition::None => request,
        Precondition::Absent => request.header(header::IF_NONE_MATCH, "*"),
        Precondition::Version(v) => request.header(header::IF_MATCH, format!("\"{v}\"")),
    }
}

/// The version in a response's `ETag: "<version>"`.
fn etag(response: &Response) -> Result<Version, ClientError> {
    response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix('"')?.strip_suffix('"')?.parse::<u64>().ok())
        .map(Version::new)
        .ok_or_else(|| ClientError::protocol("the response has no version ETag"))
}

fn too_large(max: usize) -> ClientError {
    ClientError::TooLarge {
        message: format!("the response is over the client's limit of {max} bytes"),
    }
}

fn transport_error(err: reqwest::Error) -> ClientError {
    if err.is_timeout() {
        ClientError::DeadlineExceeded
    } else {
        // Nothing was answered, so the caller may retry (a write only if it opted in). Only a
        // connection that was never made certainly changed nothing; one reset or cut short
        // may have delivered a write.
        ClientError::Unavailable {
            message: error_chain(&err),
            retry_after: None,
            refused: err.is_connect(),
        }
    }
}

/// The one mapping from REST errors to [`ClientError`]s.
fn problem_error(status: StatusCode, retry_after: Option<Duration>, p: Problem) -> ClientError {
    let message = if p.detail.is_empty() {
        status.to_string()
    } else {
        p.detail
    };
    match (status, p.code.as_str()) {
        (StatusCode::NOT_FOUND, "not_found") => ClientError::NotFound,
        // A feature turned off for this client: what gRPC says with UNIMPLEMENTED.
        (StatusCode::NOT_FOUND, "feature_disabled") => ClientError::Other {
            code: tonic::Code::Unimplemented,
            message,
        },
        (StatusCode::PRECONDITION_FAILED, _) => ClientError::PreconditionFailed {
            current: p.current_version.flatten().map(Version::new),
        },
        (StatusCode::PAYLOAD_TOO_LARGE, _) => ClientError::TooLarge { message },
        (StatusCode::BAD_REQUEST | StatusCode::URI_TOO_LONG, code) => {
            let field = match code {
                "invalid_key" | "key_too_long" => "key",
                "invalid_query" => "query",
                "invalid_header" => "precondition",
                _ => "request",
            };
            ClientError::InvalidArgument {
                field: field.into(),
                message,
            }
        }
        (StatusCode::TOO_MANY_REQUESTS, _) => ClientError::Throttled {
            message,
            retry_after,
        },
        (StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT, "outcome_unknown") => {
            ClientError::OutcomeUnknown { message }
        }
        (StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY, code) => {
            ClientError::Unavailable {
                message,
                retry_after,
                // hexkv's refusals; a proxy's 502 or 503 has no such code.
                refused: matches!(code, "overloaded" | "unavailable" | "read_only"),
            }
        }
        (StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT, _) => {
            ClientError::DeadlineExceeded
        }
        (status, _) => ClientError::Other {
            code: grpc_code(status),
            message,
        },
    }
}

/// The gRPC code closest to an HTTP status, for [`ClientError::Other`].
fn grpc_code(status: StatusCode) -> Code {
    match status.as_u16() {
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        405 | 501 => Code::Unimplemented,
        409 => Code::Aborted,
        400..=499 => Code::InvalidArgument,
        _ => Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(code: &str, current_version: Option<Option<u64>>) -> Problem {
        Problem {
            code: code.into(),
            detail: "why".into(),
            current_version,
        }
    }

    #[test]
    fn keys_are_escaped_into_one_path_segment() {
        let t = HttpTransport::new("http://h:1/".into(), &ClientOptions::default()).unwrap();
        assert_eq!(
            t.key_url("a/../b c?#%é").unwrap(),
            "http://h:1/v1/kv/a%2F..%2Fb%20c%3F%23%25%C3%A9"
        );
        assert!(matches!(
            t.key_url(".."),
            Err(ClientError::InvalidArgument { .. })
        ));
    }

    #[test]
    fn problems_map_to_typed_errors() {
        let e = |status, code, cv| problem_error(status, None, problem(code, cv));
        assert!(matches!(
            e(StatusCode::NOT_FOUND, "not_found", None),
            ClientError::NotFound
        ));
        assert!(matches!(
            e(StatusCode::NOT_FOUND, "route_not_found", None),
            ClientError::Other {
                code: Code::NotFound,
                ..
            }
        ));
        assert!(matches!(
            e(StatusCode::NOT_FOUND, "feature_disabled", None),
            ClientError::Other {
                code: Code::Unimplemented,
                ..
            }
        ));
        assert!(matches!(
            e(StatusCode::PRECONDITION_FAILED, "precondition_failed", Some(Some(7))),
            ClientError::PreconditionFailed { current: Some(v) } if v == Version::new(7)
        ));
        assert!(matches!(
            e(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                Some(None)
            ),
            ClientError::PreconditionFailed { current: None }
        ));
        assert!(matches!(
            e(StatusCode::URI_TOO_LONG, "key_too_long", None),
            ClientError::InvalidArgument { field, .. } if field == "key"
        ));
        assert!(matches!(
            e(StatusCode::BAD_REQUEST, "invalid_query", None),
            ClientError::InvalidArgument { field, .. } if field == "query"
        ));
        assert!(matches!(
            e(StatusCode::PAYLOAD_TOO_LARGE, "value_too_large", None),
            ClientError::TooLarge { .. }
        ));
        assert!(matches!(
            e(StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
            ClientError::Other {
                code: Code::Internal,
                ..
            }
        ));
    }

    #[test]
    fn retry_after_is_kept_on_503_and_429() {
        let hint = Some(Duration::from_secs(2));
        let unavailable = problem_error(
            StatusCode::SERVICE_UNAVAILABLE,
            hint,
            problem("unavailable", None),
        );
        assert!(unavailable.is_transient());
        assert_eq!(unavailable.retry_after(), hint);
        let throttled = problem_error(StatusCode::TOO_MANY_REQUESTS, hint, Problem::default());
        assert!(matches!(throttled, ClientError::Throttled { .. }));
        assert_eq!(throttled.retry_after(), hint);
    }

    #[test]
    fn a_missing_current_version_is_told_from_a_null_one() {
        let absent: Problem =
            serde_json::from_str(r#"{"code":"precondition_failed","current_version":null}"#)
                .unwrap();
        assert_eq!(absent.current_version, Some(None));
        let missing: Problem = serde_json::from_str(r#"{"code":"not_found"}"#).unwrap();
        assert_eq!(missing.current_version, None);
    }
}
