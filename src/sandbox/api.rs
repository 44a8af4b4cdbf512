//! The HTTP conventions of DigitalOcean's API that every route shares: error bodies, request
//! bodies, pagination (`page`, `per_page`, `links.pages`, `meta.total`) and id parsing.

use std::collections::HashMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cloud::{ErrorBody, Links, Meta, Pages};

/// Query parameters, as sent.
pub type Query = HashMap<String, String>;

/// An error answer with DigitalOcean's body.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Boxed: errors travel in every handler's `Result`, which should stay small.
    pub body: Box<ErrorBody>,
}

impl ApiError {
    pub fn new(status: StatusCode, id: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: Box::new(ErrorBody {
                id: Some(id.to_owned()),
                message: Some(message.into()),
                ..ErrorBody::default()
            }),
        }
    }

    pub fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "The resource you requested could not be found.",
        )
    }

    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
            message,
        )
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unable to authenticate you.",
        )
    }

    pub fn server_error(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The tag endpoints' error shape (`error`, `messages`, `root_causes`).
    pub fn tag_error(message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: Box::new(ErrorBody {
                error: Some(message.clone()),
                messages: None,
                root_causes: vec![message],
                ..ErrorBody::default()
            }),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::to_value(&self.body).unwrap_or_default();
        // `messages` is nullable and required-looking in the tag error shape: send it as null.
        if self.body.error.is_some() {
            body["messages"] = serde_json::Value::Null;
        }
        json(self.status, &body)
    }
}

pub type ApiResult = Result<Response, ApiError>;

/// A JSON answer.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = (status, bytes).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            response
        }
        Err(e) => ApiError::server_error(format!("cannot encode the answer: {e}")).into_response(),
    }
}

/// 204 with no body.
pub fn no_content() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// A request body: 400 when it is not JSON, 422 when it does not have the right fields.
pub fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("error parsing request body: {e}")))?;
    typed(value)
}

pub fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::unprocessable(format!("{e}")))
}

/// A numeric path id; anything else names nothing, so it is a 404.
pub fn id(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| ApiError::not_found())
}

/// One page of `items`, with DigitalOcean's `links` and `meta`.
pub struct Page<T> {
    pub items: Vec<T>,
    pub links: Links,
    pub meta: Meta,
}

/// Cuts a page out of `items` as `page` and `per_page` (default 20, at most 200) ask.
/// `base` is the sandbox's URL, `path` the request path; links keep the other parameters.
pub fn page<T>(items: Vec<T>, query: &Query, base: &str, path: &str) -> Result<Page<T>, ApiError> {
    let number = |name: &str, default: usize| -> Result<usize, ApiError> {
        match query.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("`{name}` must be a positive integer"))
                }),
        }
    };
    let per_page = number("per_page", 20)?.min(200);
    let page = number("page", 1)?;
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let items: Vec<T> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let mut others: Vec<(&String, &String)> = query
        .iter()
        .filter(|(k, _)| k.as_str() != "page" && k.as_str() != "per_page")
        .collect();
    others.sort();
    let url = |n: usize| {
        let mut url = format!("{base}{path}?page={n}&per_page={per_page}");
        for (k, v) in &others {
            url.push_str(&format!("&{}={}", encode(k), encode(v)));
        }
        url
    };
    let pages = Pages {
        first: (page > 1).then(|| url(1)),
        prev: (page > 1).then(|| url((page - 1).min(last))),
        next: (page < last).then(|| url(page + 1)),
        last: (page < last).then(|| url(last)),
    };
    let links = if pages == Pages::default() {
        Links::default()
    } else {
        Links { pages: Some(pages) }
    };
    Ok(Page {
        items,
        links,
        meta: Meta {
            total: total as u64,
        },
    })
}

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_link_to_their_neighbours() {
        let items: Vec<u32> = (0..45).collect();
        let query: Query = [
            ("per_page".to_string(), "20".to_string()),
            ("page".to_string(), "2".to_string()),
            ("tag_name".to_string(), "env:prod".to_string()),
        ]
        .into();
        let page = page(items, &query, "http://127.0.0.1:9", "/v2/droplets").unwrap();
        assert_eq!(page.items.first(), Some(&20));
        assert_eq!(page.items.len(), 20);
        assert_eq!(page.meta.total, 45);
        let pages = page.links.pages.unwrap();
        assert_eq!(
            pages.next.as_deref(),
            Some("http://127.0.0.1:9/v2/droplets?page=3&per_page=20&tag_name=env:prod")
        );
        assert_eq!(
            pages.prev.as_deref(),
            Some("http://127.0.0.1:9/v2/droplets?page=1&per_page=20&tag_name=env:prod")
        );
        let single = super::page(vec![1], &Query::new(), "http://x", "/v2/sizes").unwrap();
        assert_eq!(single.links, Links::default());
    }
}
