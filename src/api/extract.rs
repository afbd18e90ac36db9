//! Request extraction with errors that name the field: JSON bodies (content type, size limit,
//! syntax, types, unknown and missing fields), path ids and query strings.

use std::collections::HashMap;
use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body of type `T`.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim();
        let is_json = mime.eq_ignore_ascii_case("application/json")
            || (mime.starts_with("application/") && mime.ends_with("+json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "send the body as JSON with `Content-Type: application/json` (got {:?})",
                    if content_type.is_empty() {
                        "none"
                    } else {
                        content_type
                    }
                ),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is over the size limit (limits.max_body_bytes)",
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unreadable_body",
                    rejection.body_text(),
                )
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a JSON body into `T`, naming the field at fault on error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        json_error(e.into_inner(), &path)
    })?;
    de.end().map_err(|e| json_error(e, "."))?;
    Ok(value)
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() || path == "." {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn quoted(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

fn json_error(e: serde_json::Error, path: &str) -> ApiError {
    use serde_json::error::Category;
    let message = e.to_string();
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {message}"),
        ),
        Category::Data => {
            let (code, field) = if message.starts_with("missing field") {
                ("missing_field", join(path, quoted(&message).unwrap_or("")))
            } else if message.starts_with("unknown field") {
                // The path already ends at the unknown key.
                let name = quoted(&message).unwrap_or("");
                let field = if path.ends_with(name) {
                    path.to_owned()
                } else {
                    join(path, name)
                };
                ("unknown_field", field)
            } else if message.starts_with("invalid type") {
                ("invalid_type", path.to_owned())
            } else {
                ("invalid_value", path.to_owned())
            };
            let field = if field.is_empty() || field == "." {
                "body".to_owned()
            } else {
                field
            };
            // Drop serde_json's " at line 1 column 12" suffix: the field says where.
            let message = message
                .rsplit_once(" at line ")
                .map(|(m, _)| m.to_owned())
                .unwrap_or(message);
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                format!("{field}: {message}"),
            )
            .field(field)
        }
    }
}

/// An id from the path; a malformed id is an unknown one (404), named after its parameter.
pub fn path_id<T: FromStr>(kind: &str, raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found(kind, raw))
}

/// The query string as key → value; repeated or unknown keys are errors.
pub struct QueryMap(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::query("query", e.body_text()))?;
        let mut map = HashMap::new();
        for (k, v) in pairs {
            if map.insert(k.clone(), v).is_some() {
                return Err(ApiError::query(k.clone(), format!("`{k}` is given twice")));
            }
        }
        Ok(QueryMap(map))
    }
}

impl QueryMap {
    /// Fails on any key not in `allowed`.
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        let mut unknown: Vec<&String> = self
            .0
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .collect();
        unknown.sort();
        match unknown.first() {
            Some(k) => Err(ApiError::query(
                k.as_str(),
                format!(
                    "unknown query parameter `{k}`; expected one of: {}",
                    allowed.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    /// An integer parameter within `range`, or `default` when absent.
    pub fn int(
        &self,
        key: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ApiError> {
        let Some(raw) = self.0.get(key) else {
            return Ok(default);
        };
        match raw.parse::<u64>() {
            Ok(v) if range.contains(&v) => Ok(v),
            _ => Err(ApiError::query(
                key,
                format!(
                    "`{key}` must be an integer from {} to {} (got {raw:?})",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    /// A raw string parameter.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}
