//! A function's result as the function URL's HTTP response (lambda-compatibility.md §11): an object with
//! `statusCode` sets status, headers, cookies and a (possibly base64) body; any other JSON
//! is a 200 `application/json` answer with the result as the body.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use base64::Engine;
use serde_json::Value;

/// The response a result maps to.
#[derive(Debug, PartialEq)]
pub(crate) struct UrlResponse {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Vec<u8>,
}

/// Why a result could not become a response (the caller gets a 502; the function's
/// author gets this message in the control plane's log).
pub(crate) type BadResult = String;

fn header_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn from_result(result: &[u8]) -> Result<UrlResponse, BadResult> {
    let value: Value = serde_json::from_slice(result)
        .map_err(|e| format!("the function's result is not JSON: {e}"))?;
    let json = HeaderValue::from_static("application/json");
    let Some(obj) = value.as_object().filter(|o| o.contains_key("statusCode")) else {
        let body = match value {
            Value::String(s) => s.into_bytes(),
            _ => result.to_vec(),
        };
        return Ok(UrlResponse {
            status: StatusCode::OK,
            headers: vec![(axum::http::header::CONTENT_TYPE, json)],
            body,
        });
    };
    let status = obj
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok())
        .and_then(|n| StatusCode::from_u16(n).ok())
        .filter(|s| (100..=599).contains(&s.as_u16()))
        .ok_or_else(|| format!("statusCode {} is not an HTTP status", obj["statusCode"]))?;
    let mut headers = Vec::new();
    if let Some(h) = obj.get("headers").filter(|h| !h.is_null()) {
        let h = h
            .as_object()
            .ok_or("headers must be an object of strings")?;
        for (name, value) in h {
            let text =
                header_text(value).ok_or_else(|| format!("header {name:?} must be a string"))?;
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{name:?} is not a valid header name"))?;
            let value = HeaderValue::from_str(&text)
                .map_err(|_| format!("the value of header {name} is not a valid header value"))?;
            headers.push((name, value));
        }
    }
    if let Some(c) = obj.get("cookies").filter(|c| !c.is_null()) {
        let c = c.as_array().ok_or("cookies must be a list of strings")?;
        for cookie in c {
            let cookie = cookie.as_str().ok_or("cookies must be a list of strings")?;
            let value = HeaderValue::from_str(cookie)
                .map_err(|_| format!("cookie {cookie:?} is not a valid header value"))?;
            headers.push((axum::http::header::SET_COOKIE, value));
        }
    }
    let body = match obj.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => {
            if obj.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| format!("isBase64Encoded is true but body is not base64: {e}"))?
            } else {
                s.clone().into_bytes()
            }
        }
        Some(other) => other.to_string().into_bytes(),
    };
    Ok(UrlResponse {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_responses() {
        let r = from_result(
            br#"{"statusCode": 201, "headers": {"x-a": "1", "content-type": "text/plain"},
                "cookies": ["a=1; Path=/", "b=2"], "body": "aGk=", "isBase64Encoded": true}"#,
        )
        .unwrap();
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.body, b"hi");
        let set_cookies: Vec<_> = r
            .headers
            .iter()
            .filter(|(n, _)| n == axum::http::header::SET_COOKIE)
            .map(|(_, v)| v.to_str().unwrap())
            .collect();
        assert_eq!(set_cookies, ["a=1; Path=/", "b=2"]);
        assert!(r.headers.iter().any(|(n, v)| n == "x-a" && v == "1"));
    }

    #[test]
    fn other_json_is_a_json_200() {
        let r = from_result(br#"{"message": "hi"}"#).unwrap();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (StatusCode::OK, &br#"{"message": "hi"}"#[..])
        );
        let r = from_result(br#""just text""#).unwrap();
        assert_eq!(r.body, b"just text");
        let r = from_result(b"[1,2]").unwrap();
        assert_eq!(r.headers[0].1, "application/json");
    }

    #[test]
    fn bad_results_say_why() {
        assert!(from_result(br#"{"statusCode": 99}"#)
            .unwrap_err()
            .contains("statusCode"));
        assert!(
            from_result(br#"{"statusCode": 200, "headers": {"a b": "x"}}"#)
                .unwrap_err()
                .contains("header name")
        );
        assert!(
            from_result(br#"{"statusCode": 200, "body": "%%", "isBase64Encoded": true}"#)
                .unwrap_err()
                .contains("base64")
        );
        let r = from_result(br#"{"statusCode": 204}"#).unwrap();
        assert!(r.body.is_empty() && r.headers.is_empty());
    }
}
