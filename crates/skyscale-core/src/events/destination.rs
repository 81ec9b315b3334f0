//! Destinations and the invocation record: where an event's outcome goes (another Skyscale
//! function, named by name or ARN), and Lambda's document that tells it what happened.

use skyscale_types::FunctionName;

use crate::{InvokeOutput, Settings};

/// A destination function, optionally qualified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Destination {
    pub function: FunctionName,
    pub qualifier: Option<String>,
}

impl Destination {
    /// `name`, `name:qualifier`, or `arn:aws:lambda:<region>:<account>:function:name[:q]`
    /// of this Skyscale (its region and account). Other services' ARNs (SQS, SNS,
    /// EventBridge) are refused by name.
    pub fn parse(raw: &str, settings: &Settings) -> Result<Self, String> {
        let rest = if let Some(arn) = raw.strip_prefix("arn:") {
            let parts: Vec<&str> = arn.splitn(5, ':').collect();
            let [partition, service, region, account, rest] = parts[..] else {
                return Err(format!("{raw:?} is not an ARN"));
            };
            if partition != "aws" || service != "lambda" {
                return Err(format!(
                    "{raw:?} is not a Lambda function ARN: Skyscale sends records to \
                     functions only (not to SQS, SNS or EventBridge)"
                ));
            }
            if region != settings.region || account != settings.account_id {
                return Err(format!(
                    "{raw:?} names region {region} and account {account}: this Skyscale is \
                     region {} and account {}",
                    settings.region, settings.account_id
                ));
            }
            rest.strip_prefix("function:")
                .ok_or_else(|| format!("{raw:?} is not a Lambda function ARN"))?
        } else {
            raw
        };
        let (name, qualifier) = match rest.split_once(':') {
            Some((n, q)) => (n, Some(q)),
            None => (rest, None),
        };
        let function = FunctionName::parse(name).map_err(|e| e.to_string())?;
        if let Some(q) = qualifier {
            let ok = !q.is_empty()
                && q.len() <= 128
                && q.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'$');
            if !ok {
                return Err(format!("{raw:?} has an invalid qualifier {q:?}"));
            }
        }
        Ok(Self {
            function,
            qualifier: qualifier.filter(|q| *q != "$LATEST").map(str::to_owned),
        })
    }

    /// Its ARN (qualified when it is).
    pub fn arn(&self, settings: &Settings) -> String {
        let arn = settings.function_arn(self.function.as_str());
        match &self.qualifier {
            Some(q) => format!("{arn}:{q}"),
            None => arn,
        }
    }
}

/// Why a record is sent (Lambda's `requestContext.condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::RetriesExhausted => "RetriesExhausted",
            Self::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

/// A JSON document's value, or its text as a string when it is not JSON.
fn json_or_text(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Lambda's invocation record: what a destination receives, and what a dead letter keeps.
/// `request_id` is the event's id (the id its 202 carried); `invokes` the attempts that ran;
/// `out` the last attempt's result, if one ran.
pub(crate) fn invocation_record(
    request_id: &str,
    function_arn: &str,
    condition: Condition,
    invokes: u32,
    payload: &[u8],
    out: Option<&InvokeOutput>,
) -> serde_json::Value {
    let mut response_context = serde_json::json!({
        "statusCode": 200,
        "executedVersion": out.map_or("$LATEST", |o| o.executed_version.as_str()),
    });
    if let Some(kind) = out.and_then(InvokeOutput::function_error) {
        response_context["functionError"] = kind.into();
    }
    let mut record = serde_json::json!({
        "version": "1.0",
        "timestamp": skyscale_store::now_rfc3339(),
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition.as_str(),
            "approximateInvokeCount": invokes,
        },
        "requestPayload": json_or_text(payload),
        "responseContext": response_context,
    });
    if let Some(out) = out.filter(|o| !o.body.is_empty()) {
        record["responsePayload"] = json_or_text(&out.body);
    }
    if out.is_none() {
        // Nothing ran: Lambda sends no response for an event that aged out.
        if let Some(obj) = record.as_object_mut() {
            obj.remove("responseContext");
        }
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_from_names_and_arns() {
        let s = Settings::default();
        let d = Destination::parse("other", &s).unwrap();
        assert_eq!(d.function.as_str(), "other");
        assert_eq!(d.qualifier, None);
        assert_eq!(
            d.arn(&s),
            "arn:aws:lambda:us-east-1:000000000000:function:other"
        );
        let d = Destination::parse(
            "arn:aws:lambda:us-east-1:000000000000:function:other:live",
            &s,
        )
        .unwrap();
        assert_eq!(d.qualifier.as_deref(), Some("live"));
        assert_eq!(
            Destination::parse("other:$LATEST", &s).unwrap().qualifier,
            None
        );
        for bad in [
            "arn:aws:sqs:us-east-1:000000000000:queue",
            "arn:aws:lambda:eu-west-1:000000000000:function:other",
            "arn:aws:lambda:us-east-1:000000000000:layer:x",
            "bad name",
            "f:bad qualifier",
        ] {
            assert!(Destination::parse(bad, &s).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_record_without_a_run_has_no_response() {
        let r = invocation_record(
            "id",
            "arn:f",
            Condition::EventAgeExceeded,
            0,
            b"{\"a\":1}",
            None,
        );
        assert_eq!(r["requestContext"]["condition"], "EventAgeExceeded");
        assert_eq!(r["requestContext"]["approximateInvokeCount"], 0);
        assert_eq!(r["requestPayload"]["a"], 1);
        assert!(r.get("responseContext").is_none());
        assert!(r.get("responsePayload").is_none());
    }
}
