//! Vectors signed by botocore 1.44 (`SigV4Auth(creds, "lambda", "us-east-1")`), one per
//! request shape that matters: an ARN in the path with a `$LATEST` qualifier, an Invoke with
//! a body and an `x-amz-*` header, and repeated query keys.

use std::time::{Duration, SystemTime};

use super::*;

const SECRET: &str = "test-secret-test-secret-test-secret-0001";
const DATE: &str = "20261127T124045Z";

fn at_signing_time() -> SystemTime {
    SystemTime::from(time::macros::datetime!(2026-11-27 12:40:45 UTC))
}

fn headers(host: &str, extra: &[(&str, &str)], auth: &str) -> Vec<(String, String)> {
    let mut h = vec![
        ("Host".to_owned(), host.to_owned()),
        ("X-Amz-Date".to_owned(), DATE.to_owned()),
        ("Authorization".to_owned(), auth.to_owned()),
        ("User-Agent".to_owned(), "Boto3/1.44.8".to_owned()),
    ];
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

fn check(
    method: &str,
    path: &str,
    query: Option<&str>,
    hdrs: &[(String, String)],
    body: &[u8],
    now: SystemTime,
) -> Result<(), SigV4Error> {
    let auth_header = &hdrs.iter().find(|(k, _)| k == "Authorization").unwrap().1;
    let auth = Authorization::parse(auth_header)?;
    assert_eq!(auth.key_id, "SKYTESTKEY000000001");
    let req = Request {
        method,
        path,
        query,
        headers: hdrs,
        body,
    };
    verify(&req, &auth, SECRET, "lambda", now)
}

const GET_AUTH: &str = "AWS4-HMAC-SHA256 Credential=SKYTESTKEY000000001/20261127/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=ebd2db3a966ab73fc1d7fa1014745c2d6ba75cc7507c96ac0f09edc07d878898";
const GET_PATH: &str = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af/configuration";

#[test]
fn arn_in_path_and_latest_qualifier() {
    let h = headers("127.0.0.1:8080", &[], GET_AUTH);
    check(
        "GET",
        GET_PATH,
        Some("Qualifier=%24LATEST"),
        &h,
        b"",
        at_signing_time(),
    )
    .unwrap();
}

#[test]
fn invoke_with_body_and_amz_header() {
    let auth = "AWS4-HMAC-SHA256 Credential=SKYTESTKEY000000001/20261127/us-east-1/lambda/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-log-type, Signature=bbd1961de498d3a6396f201854fcb053ef054e1a597a6080caf7def4fee57884";
    let h = headers(
        "127.0.0.1:8080",
        &[
            ("X-Amz-Log-Type", "Tail"),
            ("Content-Type", "application/json"),
        ],
        auth,
    );
    let body = br#"{"name": "John"}"#;
    check(
        "POST",
        "/2015-03-31/functions/hello/invocations",
        None,
        &h,
        body,
        at_signing_time(),
    )
    .unwrap();
    // Any change to what was signed breaks it.
    assert_eq!(
        check(
            "POST",
            "/2015-03-31/functions/hello/invocations",
            None,
            &h,
            br#"{"name": "Jane"}"#,
            at_signing_time()
        ),
        Err(SigV4Error::Mismatch)
    );
    assert_eq!(
        check(
            "POST",
            "/2015-03-31/functions/other/invocations",
            None,
            &h,
            body,
            at_signing_time()
        ),
        Err(SigV4Error::Mismatch)
    );
}

#[test]
fn repeated_query_keys_are_sorted() {
    let auth = "AWS4-HMAC-SHA256 Credential=SKYTESTKEY000000001/20261127/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=a05b9815f5f117f8cbc936c5c98b36fd996da7a82eb4e2bf53b4026df197d034";
    let h = headers("localhost:9000", &[], auth);
    let path = "/2017-03-31/tags/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af";
    check(
        "DELETE",
        path,
        Some("tagKeys=b&tagKeys=a"),
        &h,
        b"",
        at_signing_time(),
    )
    .unwrap();
}

#[test]
fn wrong_secret_host_or_time_is_refused() {
    let h = headers("127.0.0.1:8080", &[], GET_AUTH);
    let auth = Authorization::parse(GET_AUTH).unwrap();
    let req = Request {
        method: "GET",
        path: GET_PATH,
        query: Some("Qualifier=%24LATEST"),
        headers: &h,
        body: b"",
    };
    assert_eq!(
        verify(
            &req,
            &auth,
            "another-secret-another-secret-000000",
            "lambda",
            at_signing_time()
        ),
        Err(SigV4Error::Mismatch)
    );
    let moved = headers("127.0.0.1:8081", &[], GET_AUTH);
    let req2 = Request {
        headers: &moved,
        ..req.clone()
    };
    assert_eq!(
        verify(&req2, &auth, SECRET, "lambda", at_signing_time()),
        Err(SigV4Error::Mismatch)
    );
    let late = at_signing_time() + Duration::from_secs(16 * 60);
    assert!(matches!(
        verify(&req, &auth, SECRET, "lambda", late),
        Err(SigV4Error::Expired(_))
    ));
    let early = at_signing_time() - Duration::from_secs(16 * 60);
    assert!(matches!(
        verify(&req, &auth, SECRET, "lambda", early),
        Err(SigV4Error::Expired(_))
    ));
    assert!(matches!(
        verify(&req, &auth, SECRET, "s3", at_signing_time()),
        Err(SigV4Error::Scope(_))
    ));
}

#[test]
fn malformed_headers() {
    for bad in [
        "Bearer abc",
        "AWS4-HMAC-SHA256 Credential=a/b/c, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=K/20261127/us-east-1/lambda/aws4_request, SignedHeaders=x-amz-date, Signature=ebd2db3a966ab73fc1d7fa1014745c2d6ba75cc7507c96ac0f09edc07d878898",
    ] {
        assert!(matches!(Authorization::parse(bad), Err(SigV4Error::Malformed(_))), "{bad}");
    }
}

#[test]
fn canonical_forms() {
    assert_eq!(canonical_uri("/a/./b/../c//d/"), "/a/c/d/");
    assert_eq!(canonical_uri("/f/arn%3Aaws"), "/f/arn%253Aaws");
    assert_eq!(canonical_uri("/"), "/");
    assert_eq!(canonical_query("b=2&a=%7E&a=1&c"), "a=1&a=~&b=2&c=");
    assert_eq!(canonical_query("k=a%20b"), "k=a%20b");
    assert_eq!(canonical_query("k=a+b"), "k=a%2Bb");
}
