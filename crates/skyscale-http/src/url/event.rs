//! An HTTP request to a function URL as the payload-format-2.0 event the function receives
//! (lambda-compatibility.md §11): lowercased headers with repeats joined by `,`, cookies split out,
//! repeated query keys joined by `,`, binary bodies base64-encoded.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::http::{header, HeaderMap, Method};
use base64::Engine;
use serde_json::{json, Map, Value};

/// Who signed an `AWS_IAM` request.
pub(crate) struct IamCaller {
    pub access_key: String,
    pub account_id: String,
}

/// Everything the event is made of.
pub(crate) struct UrlRequest<'a> {
    pub method: &'a Method,
    /// The path below the URL's prefix, as received (always starts with `/`).
    pub raw_path: &'a str,
    pub raw_query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub source_ip: String,
    pub url_id: &'a str,
    /// The `Host` the caller used.
    pub domain: &'a str,
    pub request_id: &'a str,
    pub trace_id: &'a str,
    pub now: SystemTime,
    /// `Some` for `AWS_IAM` URLs.
    pub iam: Option<IamCaller>,
}

/// Content types whose bodies are passed as text (when they are valid UTF-8).
fn is_textual(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return true;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("/json")
        || essence.ends_with("+json")
        || essence.ends_with("/xml")
        || essence.ends_with("+xml")
        || essence == "application/javascript"
        || essence == "application/x-www-form-urlencoded"
        || essence == "application/graphql"
}

/// `12/Mar/2020:19:03:58 +0000`.
fn clf_time(now: SystemTime) -> String {
    let t = time::OffsetDateTime::from(now)
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    t.format(&fmt).unwrap_or_default()
}

/// Query parameters by name, repeated values joined with `,`.
fn query_parameters(raw: &str) -> Map<String, Value> {
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        params
            .entry(k.into_owned())
            .and_modify(|existing| {
                existing.push(',');
                existing.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    params
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect()
}

pub(crate) fn event(r: &UrlRequest<'_>) -> Value {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies: Vec<String> = Vec::new();
    for (name, value) in r.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        if name == header::COOKIE {
            cookies.extend(
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
            );
            continue;
        }
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push(',');
                existing.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let forwarded_for = match headers.get("x-forwarded-for") {
        Some(chain) => format!("{chain}, {}", r.source_ip),
        None => r.source_ip.clone(),
    };
    headers.insert("x-forwarded-for".into(), forwarded_for);
    headers
        .entry("x-forwarded-proto".into())
        .or_insert_with(|| "http".into());
    if let Some(port) = r.domain.rsplit_once(':').map(|(_, p)| p.to_owned()) {
        headers.entry("x-forwarded-port".into()).or_insert(port);
    }
    headers.insert("x-amzn-trace-id".into(), r.trace_id.to_owned());

    let epoch_ms = skyscale_types::time::epoch_ms(r.now);
    let user_agent = headers.get("user-agent").cloned().unwrap_or_default();
    let mut context = json!({
        "accountId": r.iam.as_ref().map_or("anonymous", |c| c.account_id.as_str()),
        "apiId": r.url_id,
        "domainName": r.domain,
        "domainPrefix": r.url_id,
        "http": {
            "method": r.method.as_str(),
            "path": r.raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": r.source_ip,
            "userAgent": user_agent,
        },
        "requestId": r.request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": clf_time(r.now),
        "timeEpoch": epoch_ms,
    });
    if let Some(iam) = &r.iam {
        context["authorizer"] = json!({ "iam": {
            "accessKey": iam.access_key,
            "accountId": iam.account_id,
            "callerId": iam.access_key,
            "userArn": format!("arn:aws:iam::{}:user/{}", iam.account_id, iam.access_key),
            "userId": iam.access_key,
        }});
    }

    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": r.raw_path,
        "rawQueryString": r.raw_query.unwrap_or(""),
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if let Some(q) = r.raw_query.filter(|q| !q.is_empty()) {
        event["queryStringParameters"] = Value::Object(query_parameters(q));
    }
    if !r.body.is_empty() {
        let content_type = r
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        match std::str::from_utf8(r.body) {
            Ok(text) if is_textual(content_type) => event["body"] = json!(text),
            _ => {
                event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(r.body));
                event["isBase64Encoded"] = json!(true);
            }
        }
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn request<'a>(
        headers: &'a HeaderMap,
        body: &'a [u8],
        query: Option<&'a str>,
    ) -> UrlRequest<'a> {
        UrlRequest {
            method: &Method::POST,
            raw_path: "/my/path",
            raw_query: query,
            headers,
            body,
            source_ip: "10.0.0.9".into(),
            url_id: "abc123",
            domain: "127.0.0.1:8080",
            request_id: "req-1",
            trace_id: "Root=1-5e6b4a2e-0123456789abcdef01234567",
            now: skyscale_types::time::from_epoch_ms(1_583_348_638_390),
            iam: None,
        }
    }

    #[test]
    fn headers_cookies_query_and_text_body() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.append("x-multi", HeaderValue::from_static("a"));
        h.append("x-multi", HeaderValue::from_static("b"));
        h.insert("cookie", HeaderValue::from_static("c1=v1; c2=v2"));
        h.insert("user-agent", HeaderValue::from_static("curl/8"));
        let e = event(&request(&h, br#"{"k":1}"#, Some("a=1&a=2&b=x%20y")));
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["rawPath"], "/my/path");
        assert_eq!(e["rawQueryString"], "a=1&a=2&b=x%20y");
        assert_eq!(e["queryStringParameters"], json!({"a": "1,2", "b": "x y"}));
        assert_eq!(e["cookies"], json!(["c1=v1", "c2=v2"]));
        assert_eq!(e["headers"]["x-multi"], "a,b");
        assert!(e["headers"].get("cookie").is_none());
        assert_eq!(e["headers"]["x-forwarded-for"], "10.0.0.9");
        assert_eq!(e["headers"]["x-forwarded-port"], "8080");
        assert_eq!(e["body"], r#"{"k":1}"#);
        assert_eq!(e["isBase64Encoded"], false);
        let ctx = &e["requestContext"];
        assert_eq!(ctx["http"]["method"], "POST");
        assert_eq!(ctx["http"]["userAgent"], "curl/8");
        assert_eq!(ctx["accountId"], "anonymous");
        assert_eq!(ctx["time"], "04/Mar/2020:19:03:58 +0000");
        assert_eq!(ctx["timeEpoch"], 1_583_348_638_390u64);
        assert!(ctx.get("authorizer").is_none());
    }

    #[test]
    fn binary_bodies_are_base64_and_empty_ones_absent() {
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            HeaderValue::from_static("application/octet-stream"),
        );
        let e = event(&request(&h, &[0, 159, 146, 150], None));
        assert_eq!(e["body"], "AJ+Slg==");
        assert_eq!(e["isBase64Encoded"], true);
        assert!(e.get("queryStringParameters").is_none());
        assert!(e.get("cookies").is_none());
        let e = event(&request(&HeaderMap::new(), b"", None));
        assert!(e.get("body").is_none());
        // Text with a binary content type is still binary; invalid UTF-8 always is.
        let e = event(&request(&h, b"plain", None));
        assert_eq!(e["isBase64Encoded"], true);
        let e = event(&request(&HeaderMap::new(), &[0xff, 0xfe], None));
        assert_eq!(e["isBase64Encoded"], true);
    }

    #[test]
    fn iam_callers_appear_in_the_authorizer() {
        let h = HeaderMap::new();
        let mut r = request(&h, b"", None);
        r.iam = Some(IamCaller {
            access_key: "key1".into(),
            account_id: "000000000000".into(),
        });
        let e = event(&r);
        assert_eq!(e["requestContext"]["accountId"], "000000000000");
        assert_eq!(
            e["requestContext"]["authorizer"]["iam"]["accessKey"],
            "key1"
        );
    }
}
