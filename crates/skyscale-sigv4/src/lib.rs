//! Verifying AWS Signature Version 4 signatures on incoming requests.
//!
//! Pure functions, no I/O and no HTTP framework: the caller hands in the request's method,
//! its path and query exactly as received (still percent-encoded), its headers and body, and
//! the secret of the key named in the `Authorization` header. The algorithm follows what
//! botocore signs for a non-S3 service (docs/lambda-compatibility.md §12): the canonical URI
//! is the received path, normalised and percent-encoded a second time.

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// How far a request's `X-Amz-Date` may be from the server's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Everything but `A-Za-z0-9-_.~` is encoded (RFC 3986 unreserved characters stay).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Why a signature was refused. The variants map to AWS's error codes: `Missing` →
/// MissingAuthenticationTokenException, `UnknownKey` → UnrecognizedClientException, the
/// rest → InvalidSignatureException. (Skyscale's Lambda API answers `Mismatch` like
/// `UnknownKey`, so that a caller cannot tell which key ids exist.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// No `Authorization` header.
    #[error("missing authentication token")]
    Missing,
    /// The header is not a SigV4 authorization.
    #[error("malformed authorization: {0}")]
    Malformed(String),
    /// The key id is not known (the caller decides; listed here for mapping).
    #[error("the security token included in the request is invalid")]
    UnknownKey,
    /// `X-Amz-Date` is missing or unparsable.
    #[error("missing or invalid X-Amz-Date header")]
    BadDate,
    /// The request's time is too far from the server's.
    #[error("signature expired: {0} is more than 15 minutes away from the server's time")]
    Expired(String),
    /// The credential scope does not match the request.
    #[error("credential scope {0} does not match the request")]
    Scope(String),
    /// A header listed as signed is absent.
    #[error("signed header {0} is missing from the request")]
    MissingSignedHeader(String),
    /// The signature does not match.
    #[error("the request signature we calculated does not match the signature you provided")]
    Mismatch,
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`
/// header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl Authorization {
    pub fn parse(header: &str) -> Result<Self, SigV4Error> {
        let bad = |m: &str| SigV4Error::Malformed(m.to_owned());
        let rest = header
            .strip_prefix(ALGORITHM)
            .ok_or_else(|| bad("expected the AWS4-HMAC-SHA256 algorithm"))?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            match part.trim().split_once('=') {
                Some(("Credential", v)) => credential = Some(v),
                Some(("SignedHeaders", v)) => signed = Some(v),
                Some(("Signature", v)) => signature = Some(v),
                _ => {}
            }
        }
        let credential = credential.ok_or_else(|| bad("no Credential"))?;
        let mut scope = credential.split('/');
        let (Some(key_id), Some(date), Some(region), Some(service), Some("aws4_request"), None) = (
            scope.next(),
            scope.next(),
            scope.next(),
            scope.next(),
            scope.next(),
            scope.next(),
        ) else {
            return Err(bad(
                "Credential must be <key>/<date>/<region>/<service>/aws4_request",
            ));
        };
        let signature = signature.ok_or_else(|| bad("no Signature"))?;
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("Signature must be 64 hex digits"));
        }
        let signed_headers: Vec<String> = signed
            .ok_or_else(|| bad("no SignedHeaders"))?
            .split(';')
            .map(str::to_ascii_lowercase)
            .collect();
        if !signed_headers.iter().any(|h| h == "host") {
            return Err(bad("SignedHeaders must include host"));
        }
        Ok(Self {
            key_id: key_id.to_owned(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            signed_headers,
            signature: signature.to_ascii_lowercase(),
        })
    }
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as received, still percent-encoded.
    pub path: &'a str,
    /// The raw query string (without `?`), if any.
    pub query: Option<&'a str>,
    /// Every header; names in any case; repeated names appear repeatedly.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Request<'_> {
    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Checks the request's signature with the key's `secret`, for `service`, at `now`.
pub fn verify(
    req: &Request<'_>,
    auth: &Authorization,
    secret: &str,
    service: &str,
    now: SystemTime,
) -> Result<(), SigV4Error> {
    let amz_date = req
        .header_values("x-amz-date")
        .first()
        .map(|s| s.trim().to_owned())
        .ok_or(SigV4Error::BadDate)?;
    let when = parse_amz_date(&amz_date)?;
    let skew = match now.duration_since(when) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > MAX_SKEW {
        return Err(SigV4Error::Expired(amz_date));
    }
    if auth.service != service || !amz_date.starts_with(&auth.date) {
        return Err(SigV4Error::Scope(format!(
            "{}/{}/{}",
            auth.date, auth.region, auth.service
        )));
    }
    let canonical = canonical_request(req, &auth.signed_headers)?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = signing_key(secret, &auth.date, &auth.region, &auth.service);
    let mut mac = hmac_sha256(&key);
    mac.update(string_to_sign.as_bytes());
    let expected = hex::decode(&auth.signature).map_err(|_| SigV4Error::Mismatch)?;
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected)
        .map_err(|_| SigV4Error::Mismatch)
}

fn parse_amz_date(s: &str) -> Result<SystemTime, SigV4Error> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let t = time::PrimitiveDateTime::parse(s, &format).map_err(|_| SigV4Error::BadDate)?;
    Ok(SystemTime::from(t.assume_utc()))
}

fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("hmac accepts any key length"))
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = hmac_sha256(key);
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, service);
    hmac(&k_service, "aws4_request")
}

/// `METHOD\nURI\nQUERY\nHEADERS\n\nSIGNED\nPAYLOAD_HASH`.
fn canonical_request(req: &Request<'_>, signed: &[String]) -> Result<String, SigV4Error> {
    let mut headers = String::new();
    for name in signed {
        let values = req.header_values(name);
        if values.is_empty() {
            return Err(SigV4Error::MissingSignedHeader(name.clone()));
        }
        let joined: Vec<String> = values.iter().map(|v| collapse_spaces(v)).collect();
        headers.push_str(name);
        headers.push(':');
        headers.push_str(&joined.join(","));
        headers.push('\n');
    }
    let payload_hash = match req.header_values("x-amz-content-sha256").first() {
        Some(v) => v.trim().to_owned(),
        None => hex::encode(Sha256::digest(req.body)),
    };
    Ok(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.path),
        canonical_query(req.query.unwrap_or("")),
        headers,
        signed.join(";"),
        payload_hash
    ))
}

fn collapse_spaces(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The received path with `.`/`..`/empty segments removed, each segment encoded again.
fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::from("/");
    out.push_str(
        &segments
            .iter()
            .map(|s| utf8_percent_encode(s, UNRESERVED).to_string())
            .collect::<Vec<_>>()
            .join("/"),
    );
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// Query pairs decoded, re-encoded RFC 3986 style, sorted by key then value.
fn canonical_query(query: &str) -> String {
    // botocore encodes a space as %20 and `+` as %2B, so a raw `+` is taken literally.
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                utf8_percent_encode(&decode(k), UNRESERVED).to_string(),
                utf8_percent_encode(&decode(v), UNRESERVED).to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests;
