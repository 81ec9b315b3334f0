//! Every operation of the Lambda API that Skyscale does not serve gets a Lambda-shaped
//! error naming it, `UnsupportedOperationException` (400, so no SDK retries it), instead of
//! a bare 404 that SDKs report as `UnknownError` and tools read as "function not found".
//! The table is botocore's model of the Lambda API (2015-03-31) minus the operations
//! `routes` serves; a path under one of the API's dated prefixes that is no operation at
//! all is a 404 saying so.

use axum::extract::Request;
use skyscale_core::CoreError;

use super::error::LambdaError;

/// The dated prefixes of the Lambda API's paths: each gets a catch-all route.
pub(super) const PREFIXES: &[&str] = &[
    "/2014-11-13",
    "/2015-03-31",
    "/2016-08-19",
    "/2017-03-31",
    "/2017-10-31",
    "/2018-10-31",
    "/2019-09-25",
    "/2019-09-30",
    "/2020-04-22",
    "/2020-06-30",
    "/2021-07-20",
    "/2021-10-31",
    "/2021-11-15",
    "/2024-08-31",
    "/2025-11-30",
    "/2025-12-01",
    "/2026-07-09",
];

/// (method, path with `{}` for a parameter, query that tells it apart, operation).
/// Entries with a query come before the one without on the same path.
const UNSUPPORTED: &[(&str, &str, &str, &str)] = &[
    (
        "POST",
        "/2014-11-13/functions/{}/invoke-async",
        "",
        "InvokeAsync",
    ),
    (
        "GET",
        "/2015-03-31/event-source-mappings",
        "",
        "ListEventSourceMappings",
    ),
    (
        "POST",
        "/2015-03-31/event-source-mappings",
        "",
        "CreateEventSourceMapping",
    ),
    (
        "DELETE",
        "/2015-03-31/event-source-mappings/{}",
        "",
        "DeleteEventSourceMapping",
    ),
    (
        "GET",
        "/2015-03-31/event-source-mappings/{}",
        "",
        "GetEventSourceMapping",
    ),
    (
        "PUT",
        "/2015-03-31/event-source-mappings/{}",
        "",
        "UpdateEventSourceMapping",
    ),
    (
        "GET",
        "/2018-10-31/layers/{}/versions/{}/policy",
        "",
        "GetLayerVersionPolicy",
    ),
    (
        "POST",
        "/2018-10-31/layers/{}/versions/{}/policy",
        "",
        "AddLayerVersionPermission",
    ),
    (
        "DELETE",
        "/2018-10-31/layers/{}/versions/{}/policy/{}",
        "",
        "RemoveLayerVersionPermission",
    ),
    (
        "GET",
        "/2020-04-22/code-signing-configs",
        "",
        "ListCodeSigningConfigs",
    ),
    (
        "POST",
        "/2020-04-22/code-signing-configs",
        "",
        "CreateCodeSigningConfig",
    ),
    (
        "DELETE",
        "/2020-04-22/code-signing-configs/{}",
        "",
        "DeleteCodeSigningConfig",
    ),
    (
        "GET",
        "/2020-04-22/code-signing-configs/{}",
        "",
        "GetCodeSigningConfig",
    ),
    (
        "PUT",
        "/2020-04-22/code-signing-configs/{}",
        "",
        "UpdateCodeSigningConfig",
    ),
    (
        "GET",
        "/2020-04-22/code-signing-configs/{}/functions",
        "",
        "ListFunctionsByCodeSigningConfig",
    ),
    (
        "DELETE",
        "/2020-06-30/functions/{}/code-signing-config",
        "",
        "DeleteFunctionCodeSigningConfig",
    ),
    (
        "GET",
        "/2020-06-30/functions/{}/code-signing-config",
        "",
        "GetFunctionCodeSigningConfig",
    ),
    (
        "PUT",
        "/2020-06-30/functions/{}/code-signing-config",
        "",
        "PutFunctionCodeSigningConfig",
    ),
    (
        "GET",
        "/2021-07-20/functions/{}/runtime-management-config",
        "",
        "GetRuntimeManagementConfig",
    ),
    (
        "PUT",
        "/2021-07-20/functions/{}/runtime-management-config",
        "",
        "PutRuntimeManagementConfig",
    ),
    (
        "POST",
        "/2021-11-15/functions/{}/response-streaming-invocations",
        "",
        "InvokeWithResponseStream",
    ),
    (
        "GET",
        "/2024-08-31/functions/{}/recursion-config",
        "",
        "GetFunctionRecursionConfig",
    ),
    (
        "PUT",
        "/2024-08-31/functions/{}/recursion-config",
        "",
        "PutFunctionRecursionConfig",
    ),
    (
        "GET",
        "/2025-11-30/capacity-providers",
        "",
        "ListCapacityProviders",
    ),
    (
        "POST",
        "/2025-11-30/capacity-providers",
        "",
        "CreateCapacityProvider",
    ),
    (
        "DELETE",
        "/2025-11-30/capacity-providers/{}",
        "",
        "DeleteCapacityProvider",
    ),
    (
        "GET",
        "/2025-11-30/capacity-providers/{}",
        "",
        "GetCapacityProvider",
    ),
    (
        "PUT",
        "/2025-11-30/capacity-providers/{}",
        "",
        "UpdateCapacityProvider",
    ),
    (
        "GET",
        "/2025-11-30/capacity-providers/{}/function-versions",
        "",
        "ListFunctionVersionsByCapacityProvider",
    ),
    (
        "GET",
        "/2025-11-30/functions/{}/function-scaling-config",
        "",
        "GetFunctionScalingConfig",
    ),
    (
        "PUT",
        "/2025-11-30/functions/{}/function-scaling-config",
        "",
        "PutFunctionScalingConfig",
    ),
    (
        "POST",
        "/2025-12-01/durable-execution-callbacks/{}/fail",
        "",
        "SendDurableExecutionCallbackFailure",
    ),
    (
        "POST",
        "/2025-12-01/durable-execution-callbacks/{}/heartbeat",
        "",
        "SendDurableExecutionCallbackHeartbeat",
    ),
    (
        "POST",
        "/2025-12-01/durable-execution-callbacks/{}/succeed",
        "",
        "SendDurableExecutionCallbackSuccess",
    ),
    (
        "DELETE",
        "/2025-12-01/durable-executions/{}",
        "",
        "DeleteDurableExecution",
    ),
    (
        "GET",
        "/2025-12-01/durable-executions/{}",
        "",
        "GetDurableExecution",
    ),
    (
        "POST",
        "/2025-12-01/durable-executions/{}/checkpoint",
        "",
        "CheckpointDurableExecution",
    ),
    (
        "GET",
        "/2025-12-01/durable-executions/{}/history",
        "",
        "GetDurableExecutionHistory",
    ),
    (
        "POST",
        "/2025-12-01/durable-executions/{}/pause",
        "",
        "PauseDurableExecution",
    ),
    (
        "POST",
        "/2025-12-01/durable-executions/{}/resume",
        "",
        "ResumeDurableExecution",
    ),
    (
        "GET",
        "/2025-12-01/durable-executions/{}/state",
        "",
        "GetDurableExecutionState",
    ),
    (
        "POST",
        "/2025-12-01/durable-executions/{}/stop",
        "",
        "StopDurableExecution",
    ),
    (
        "GET",
        "/2025-12-01/functions/{}/durable-executions",
        "",
        "ListDurableExecutionsByFunction",
    ),
    (
        "DELETE",
        "/2026-07-09/resource-policy/{}",
        "",
        "DeleteResourcePolicy",
    ),
    (
        "GET",
        "/2026-07-09/resource-policy/{}",
        "",
        "GetResourcePolicy",
    ),
    (
        "PUT",
        "/2026-07-09/resource-policy/{}",
        "",
        "PutResourcePolicy",
    ),
];

/// The operation a request addresses, if it is one Skyscale does not serve.
fn operation(method: &str, path: &str, query: Option<&str>) -> Option<&'static str> {
    UNSUPPORTED
        .iter()
        .find(|(m, template, q, _)| {
            *m == method
                && matches(template, path)
                && (q.is_empty() || query.is_some_and(|query| query.split('&').any(|p| p == *q)))
        })
        .map(|(_, _, _, name)| *name)
}

/// Whether `path` fits `template`, a `{}` standing for one non-empty segment.
fn matches(template: &str, path: &str) -> bool {
    let mut t = template.split('/');
    let mut p = path.trim_end_matches('/').split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some("{}"), Some(s)) if !s.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// The answer to any request under the Lambda API's prefixes that no route serves (after
/// its signature was checked like every other).
pub(super) async fn unsupported(req: Request) -> LambdaError {
    let (method, path) = (req.method().as_str(), req.uri().path());
    match operation(method, path, req.uri().query()) {
        Some(name) => CoreError::Unsupported(format!(
            "{name} is not supported by Skyscale (see the README's list of the Lambda \
             operations it implements)"
        ))
        .into(),
        None => {
            let shown: String = path.chars().take(200).collect();
            CoreError::NotFound(format!("no Lambda operation matches {method} {shown}")).into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_found_by_method_path_and_query() {
        assert_eq!(
            operation("GET", "/2020-04-22/code-signing-configs/c", None),
            Some("GetCodeSigningConfig")
        );
        assert_eq!(
            operation("DELETE", "/2018-10-31/layers/l/versions/1/policy/s", None),
            Some("RemoveLayerVersionPermission")
        );
        assert_eq!(
            operation("GET", "/2018-10-31/layers/l/versions/1/policy", None),
            Some("GetLayerVersionPolicy")
        );
        assert_eq!(
            operation("GET", "/2015-03-31/functions//policy", None),
            None
        );
        assert_eq!(operation("GET", "/2015-03-31/nothing", None), None);
    }
}
