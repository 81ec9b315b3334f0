//! Resource-based policies (Lambda's AddPermission / RemovePermission / GetPolicy): how a
//! team shares one function with another key without sharing an admin key.
//!
//! What a statement means in Skyscale: a statement whose principal is an API key id (or
//! `arn:aws:iam::<account>:user/<key id>`, or `*` for every key) lets that key invoke the
//! function (the statement's alias or version) even where its role's function patterns do
//! not cover it: `lambda:InvokeFunction` for the APIs, `lambda:InvokeFunctionUrl` for an
//! `AWS_IAM` function URL. Nothing else is granted, and nothing is ever taken away.
//! Service principals (`*.amazonaws.com`) and account principals are stored and returned —
//! deploy tools add them when wiring triggers — and grant nothing, since no AWS service
//! calls Skyscale. The conditions `SourceArn`, `SourceAccount` and `PrincipalOrgID` are
//! stored and returned; a direct call by a key has no source, so a statement with any of
//! them never matches one: conditions narrow a grant, never widen it.

use std::sync::Arc;

use skyscale_store::PolicyStatement;
use skyscale_types::{FunctionName, UrlAuthType};

use crate::audit::AuditAction;
use crate::auth::{Action, Principal};
use crate::Trigger;
use crate::{blocking, ControlPlane, CoreError};

const INVOKE: &str = "lambda:InvokeFunction";
const INVOKE_URL: &str = "lambda:InvokeFunctionUrl";

/// A statement to add.
#[derive(Debug, Clone, Default)]
pub struct NewStatement {
    pub statement_id: String,
    pub action: String,
    pub principal: String,
    pub source_arn: Option<String>,
    pub source_account: Option<String>,
    pub principal_org_id: Option<String>,
    pub url_auth_type: Option<String>,
}

fn check_statement_id(sid: &str) -> Result<(), CoreError> {
    let valid = !sid.is_empty()
        && sid.len() <= 100
        && sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(CoreError::InvalidParameter(format!(
            "invalid StatementId {sid:?}: use 1-100 letters, digits, '-', '_' and '.'"
        )))
    }
}

fn check(s: &NewStatement) -> Result<(), CoreError> {
    check_statement_id(&s.statement_id)?;
    match s.action.as_str() {
        INVOKE | INVOKE_URL => {}
        other => {
            return Err(CoreError::InvalidParameter(format!(
                "Action {other:?} is not supported by Skyscale: a policy grants only \
                 {INVOKE} or {INVOKE_URL}"
            )))
        }
    }
    if s.principal.trim().is_empty() || s.principal.len() > 256 {
        return Err(CoreError::InvalidParameter(
            "Principal is required: an API key id, its ARN, *, an account or a service".into(),
        ));
    }
    match (s.action.as_str(), s.url_auth_type.as_deref()) {
        (INVOKE_URL, None) => Err(CoreError::InvalidParameter(
            "FunctionUrlAuthType is required with lambda:InvokeFunctionUrl".into(),
        )),
        (_, Some(t)) => UrlAuthType::parse(t)
            .map(|_| ())
            .map_err(CoreError::InvalidParameter),
        _ => Ok(()),
    }
}

/// Whether `statement` lets the key `key_id` (of `account`) make this call.
fn grants(statement: &PolicyStatement, key_id: &str, account: &str, trigger: Trigger) -> bool {
    let action = match trigger {
        Trigger::Url => INVOKE_URL,
        Trigger::Sync | Trigger::Event => INVOKE,
    };
    let principal = statement.principal.as_str();
    let names_key = principal == "*"
        || principal == key_id
        || principal == format!("arn:aws:iam::{account}:user/{key_id}");
    statement.action == action
        && names_key
        && statement.source_arn.is_none()
        && statement.source_account.is_none()
        && statement.principal_org_id.is_none()
}

impl ControlPlane {
    /// Checks that `by` may invoke `name` (at `qualifier`): its role and patterns, or else a
    /// statement of the function's policy naming its key.
    pub(crate) async fn authorize_invoke(
        &self,
        by: &Principal,
        name: &str,
        qualifier: Option<&str>,
        trigger: Trigger,
    ) -> Result<FunctionName, CoreError> {
        let refused = match self.authorize_on(by, Action::Invoke, name) {
            Ok(name) => return Ok(name),
            Err(e @ CoreError::Forbidden(_)) => e,
            Err(e) => return Err(e),
        };
        let (Some(key), Ok(function)) = (&by.key_id, FunctionName::parse(name)) else {
            return Err(refused);
        };
        let qualifier = qualifier.filter(|q| *q != "$LATEST");
        let statements = self.policy_statements(&function).await?;
        let account = &self.settings().account_id;
        let granted = statements.iter().any(|s| {
            s.qualifier.as_deref() == qualifier && grants(s, key.as_str(), account, trigger)
        });
        if granted {
            Ok(function)
        } else {
            Err(refused)
        }
    }

    /// A function's statements, from the cache or the store.
    async fn policy_statements(
        &self,
        function: &FunctionName,
    ) -> Result<Arc<Vec<PolicyStatement>>, CoreError> {
        if let Some(s) = self.policies.get(function) {
            return Ok(s);
        }
        let loaded_at = self.policies.generation();
        let store = self.store.clone();
        let f = function.clone();
        let statements = Arc::new(blocking(move || Ok(store.policy_statements(&f)?)).await?);
        self.policies
            .insert(loaded_at, function.clone(), statements.clone());
        Ok(statements)
    }

    /// Adds a statement to the policy of `name` (or of its alias or version `qualifier`).
    pub async fn add_permission(
        &self,
        by: &Principal,
        name: &str,
        qualifier: Option<&str>,
        statement: NewStatement,
    ) -> Result<PolicyStatement, CoreError> {
        let op = async {
            let function = self.authorize_on(by, Action::ChangeFunction, name)?;
            check(&statement)?;
            let qualifier = qualifier.filter(|q| *q != "$LATEST").map(str::to_owned);
            if let Some(q) = &qualifier {
                // The alias or version must exist.
                self.version_record(function.as_str(), Some(q), false)
                    .await?;
            }
            let store = self.store.clone();
            let row = PolicyStatement {
                function: function.clone(),
                qualifier,
                statement_id: statement.statement_id,
                action: statement.action,
                principal: statement.principal,
                source_arn: statement.source_arn,
                source_account: statement.source_account,
                principal_org_id: statement.principal_org_id,
                url_auth_type: statement.url_auth_type,
                created_at: String::new(),
            };
            let stored = blocking(move || Ok(store.add_policy_statement(&row)?)).await?;
            self.policies.invalidate(&function);
            Ok(stored)
        };
        self.audited_with(by, AuditAction::PermissionAdd, name, op, |s| {
            (
                s.function.to_string(),
                format!("statement {} for {}", s.statement_id, s.principal),
            )
        })
        .await
    }

    /// Removes a statement; "not found" if the policy has no such statement.
    pub async fn remove_permission(
        &self,
        by: &Principal,
        name: &str,
        qualifier: Option<&str>,
        statement_id: &str,
    ) -> Result<(), CoreError> {
        let op = async {
            let function = self.authorize_on(by, Action::ChangeFunction, name)?;
            check_statement_id(statement_id)?;
            let qualifier = qualifier.filter(|q| *q != "$LATEST").map(str::to_owned);
            let store = self.store.clone();
            let (f, sid) = (function.clone(), statement_id.to_owned());
            let removed = blocking(move || {
                if store.get_function(&f)?.is_none() {
                    return Err(CoreError::NotFound(format!("function {f} not found")));
                }
                Ok(store.remove_policy_statement(&f, qualifier.as_deref(), &sid)?)
            })
            .await?;
            self.policies.invalidate(&function);
            if removed {
                Ok(())
            } else {
                Err(CoreError::NotFound(format!(
                    "the policy of {function} has no statement {statement_id}"
                )))
            }
        };
        self.audited(by, AuditAction::PermissionRemove, name, op)
            .await
    }

    /// The statements of the policy of `name` (or of its alias or version `qualifier`);
    /// "not found" when there are none, as Lambda.
    pub async fn policy(
        &self,
        by: &Principal,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<Vec<PolicyStatement>, CoreError> {
        let function = self.authorize_on(by, Action::ReadFunction, name)?;
        // The function (and the qualifier) must exist.
        self.version_record(function.as_str(), qualifier, false)
            .await?;
        let qualifier = qualifier.filter(|q| *q != "$LATEST");
        let statements: Vec<PolicyStatement> = self
            .policy_statements(&function)
            .await?
            .iter()
            .filter(|s| s.qualifier.as_deref() == qualifier)
            .cloned()
            .collect();
        if statements.is_empty() {
            return Err(CoreError::NotFound(format!(
                "the function {function} has no policy"
            )));
        }
        Ok(statements)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(principal: &str, action: &str) -> PolicyStatement {
        PolicyStatement {
            function: FunctionName::parse("f").unwrap(),
            qualifier: None,
            statement_id: "s".into(),
            action: action.into(),
            principal: principal.into(),
            source_arn: None,
            source_account: None,
            principal_org_id: None,
            url_auth_type: None,
            created_at: String::new(),
        }
    }

    #[test]
    fn a_statement_grants_its_key_its_action_and_nothing_with_conditions() {
        let acct = "000000000000";
        assert!(grants(
            &statement("SKYKEY", INVOKE),
            "SKYKEY",
            acct,
            Trigger::Sync
        ));
        assert!(grants(
            &statement("arn:aws:iam::000000000000:user/SKYKEY", INVOKE),
            "SKYKEY",
            acct,
            Trigger::Event
        ));
        assert!(grants(&statement("*", INVOKE), "ANY", acct, Trigger::Sync));
        assert!(!grants(
            &statement("OTHER", INVOKE),
            "SKYKEY",
            acct,
            Trigger::Sync
        ));
        assert!(!grants(
            &statement("SKYKEY", INVOKE),
            "SKYKEY",
            acct,
            Trigger::Url
        ));
        assert!(grants(
            &statement("SKYKEY", INVOKE_URL),
            "SKYKEY",
            acct,
            Trigger::Url
        ));
        assert!(!grants(
            &statement("apigateway.amazonaws.com", INVOKE),
            "SKYKEY",
            acct,
            Trigger::Sync
        ));
        let mut conditioned = statement("SKYKEY", INVOKE);
        conditioned.source_arn = Some("arn:aws:execute-api:us-east-1:1:api/*".into());
        assert!(!grants(&conditioned, "SKYKEY", acct, Trigger::Sync));
    }
}
