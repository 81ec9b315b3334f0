//! Function URLs: an HTTP endpoint on the control plane for `$LATEST` or an alias of a
//! function, public (`NONE`) or SigV4-signed (`AWS_IAM`), with optional CORS. The HTTP
//! layer serves the requests; this module keeps the configurations.

use std::sync::Arc;

use skyscale_store::{UrlConfigRecord, UrlConfigUpdate};
use skyscale_types::{Cors, FunctionName, UrlAuthType};

use crate::audit::AuditAction;
use crate::auth::Action;
use crate::{blocking, ControlPlane, CoreError, Principal};

/// The only invoke mode: the whole response is returned at once.
pub const INVOKE_MODE_BUFFERED: &str = "BUFFERED";
const INVOKE_MODE_STREAM: &str = "RESPONSE_STREAM";

/// A function URL's settings as the APIs show them.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlConfig {
    pub function: String,
    /// The alias the URL invokes; `None` for `$LATEST`.
    pub alias: Option<String>,
    /// The function's ARN, qualified with the alias if there is one.
    pub function_arn: String,
    /// Random and unique (the event's `apiId`).
    pub url_id: String,
    pub auth_type: UrlAuthType,
    pub cors: Option<Cors>,
    pub invoke_mode: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A URL's target: `None`/`$LATEST` or an alias. Versions cannot have URLs (as in Lambda):
/// a URL of an alias follows the alias when it moves.
fn parse_alias(qualifier: Option<&str>) -> Result<Option<&str>, CoreError> {
    match qualifier {
        None | Some("$LATEST") => Ok(None),
        Some(q) if crate::aliases::is_alias_name(q) => Ok(Some(q)),
        Some(q) => Err(CoreError::InvalidParameter(format!(
            "invalid qualifier {q:?}: a function URL belongs to $LATEST or an alias, \
             not a version"
        ))),
    }
}

fn parse_invoke_mode(mode: Option<&str>) -> Result<Option<String>, CoreError> {
    match mode {
        None => Ok(None),
        Some(INVOKE_MODE_BUFFERED) => Ok(Some(INVOKE_MODE_BUFFERED.to_owned())),
        Some(INVOKE_MODE_STREAM) => Err(CoreError::InvalidParameter(
            "InvokeMode RESPONSE_STREAM is not supported: Skyscale returns the whole \
             response at once (BUFFERED)"
                .into(),
        )),
        Some(m) => Err(CoreError::InvalidParameter(format!(
            "invalid InvokeMode {m:?}: expected BUFFERED"
        ))),
    }
}

fn validate_cors(cors: Option<&Cors>) -> Result<(), CoreError> {
    cors.map_or(Ok(()), |c| {
        c.validate().map_err(CoreError::InvalidParameter)
    })
}

/// `function` or `function:alias`, for the audit log.
fn url_target(function: &str, qualifier: Option<&str>) -> String {
    match qualifier {
        Some(q) if q != "$LATEST" => format!("{function}:{q}"),
        _ => function.to_owned(),
    }
}

fn url_detail(c: &UrlConfig) -> String {
    let cors = if c.cors.is_some() { ", CORS" } else { "" };
    format!("auth {}{cors}", c.auth_type.as_str())
}

impl ControlPlane {
    fn url_info(&self, c: &UrlConfigRecord) -> UrlConfig {
        let arn = self.settings.function_arn(c.function.as_str());
        UrlConfig {
            function: c.function.to_string(),
            alias: c.alias.clone(),
            function_arn: match &c.alias {
                Some(a) => format!("{arn}:{a}"),
                None => arn,
            },
            url_id: c.url_id.clone(),
            auth_type: c.auth_type,
            cors: c.cors.clone(),
            invoke_mode: c.invoke_mode.clone(),
            created_at: c.created_at.clone(),
            updated_at: c.updated_at.clone(),
        }
    }

    fn url_not_found(function: &FunctionName, alias: Option<&str>) -> CoreError {
        CoreError::NotFound(match alias {
            Some(a) => format!("function {function}:{a} has no function URL"),
            None => format!("function {function} has no function URL"),
        })
    }

    pub async fn create_url_config(
        &self,
        by: &Principal,
        function: &str,
        qualifier: Option<&str>,
        auth_type: UrlAuthType,
        cors: Option<Cors>,
        invoke_mode: Option<&str>,
    ) -> Result<UrlConfig, CoreError> {
        self.audited_with(
            by,
            AuditAction::UrlCreate,
            &url_target(function, qualifier),
            self.create_url_config_inner(by, function, qualifier, auth_type, cors, invoke_mode),
            |c| (url_target(&c.function, c.alias.as_deref()), url_detail(c)),
        )
        .await
    }

    async fn create_url_config_inner(
        &self,
        by: &Principal,
        function: &str,
        qualifier: Option<&str>,
        auth_type: UrlAuthType,
        cors: Option<Cors>,
        invoke_mode: Option<&str>,
    ) -> Result<UrlConfig, CoreError> {
        let function = self.authorize_on(by, Action::ChangeFunction, function)?;
        let alias = parse_alias(qualifier)?.map(str::to_owned);
        let invoke_mode =
            parse_invoke_mode(invoke_mode)?.unwrap_or_else(|| INVOKE_MODE_BUFFERED.to_owned());
        validate_cors(cors.as_ref())?;
        let url_id = uuid::Uuid::new_v4().simple().to_string();
        let store = self.store.clone();
        let (f, a) = (function.clone(), alias.clone());
        let c = blocking(move || {
            Ok(store.create_url_config(
                &f,
                a.as_deref(),
                &url_id,
                auth_type,
                cors.as_ref(),
                &invoke_mode,
            )?)
        })
        .await?;
        self.urls.invalidate(&(function.clone(), alias));
        tracing::info!(function = %function, alias = ?c.alias, auth = auth_type.as_str(), "function URL created");
        Ok(self.url_info(&c))
    }

    pub async fn get_url_config(
        &self,
        by: &Principal,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<UrlConfig, CoreError> {
        self.authorize_on(by, Action::ReadFunction, function)?;
        let f = self.function_record(function).await?;
        let alias = parse_alias(qualifier)?;
        Ok(self.url_info(&*self.url_record(&f.name, alias).await?))
    }

    /// The URL configuration for serving a request, from the cache or the store.
    pub async fn url_record(
        &self,
        function: &FunctionName,
        alias: Option<&str>,
    ) -> Result<Arc<UrlConfigRecord>, CoreError> {
        let key = (function.clone(), alias.map(str::to_owned));
        if let Some(c) = self.urls.get(&key) {
            return Ok(c);
        }
        let loaded_at = self.urls.generation();
        let store = self.store.clone();
        let (f, a) = key.clone();
        let c = blocking(move || Ok(store.get_url_config(&f, a.as_deref())?))
            .await?
            .ok_or_else(|| Self::url_not_found(function, alias))?;
        let c = Arc::new(c);
        self.urls.insert(loaded_at, key, c.clone());
        Ok(c)
    }

    /// One page of a function's URLs: at most `max` from the offset `marker`, and the next
    /// page's marker.
    pub async fn list_url_configs_page(
        &self,
        by: &Principal,
        function: &str,
        marker: Option<&str>,
        max: usize,
    ) -> Result<(Vec<UrlConfig>, Option<String>), CoreError> {
        self.authorize_on(by, Action::ReadFunction, function)?;
        let f = self.function_record(function).await?;
        let store = self.store.clone();
        let name = f.name.clone();
        let all = blocking(move || Ok(store.list_url_configs(&name)?)).await?;
        let (page, next) = crate::offset_page(all, marker, max)?;
        Ok((page.iter().map(|c| self.url_info(c)).collect(), next))
    }

    /// Changes a URL's settings; `cors: Some(None)` removes CORS.
    pub async fn update_url_config(
        &self,
        by: &Principal,
        function: &str,
        qualifier: Option<&str>,
        auth_type: Option<UrlAuthType>,
        cors: Option<Option<Cors>>,
        invoke_mode: Option<&str>,
    ) -> Result<UrlConfig, CoreError> {
        self.audited_with(
            by,
            AuditAction::UrlUpdate,
            &url_target(function, qualifier),
            self.update_url_config_inner(by, function, qualifier, auth_type, cors, invoke_mode),
            |c| (url_target(&c.function, c.alias.as_deref()), url_detail(c)),
        )
        .await
    }

    async fn update_url_config_inner(
        &self,
        by: &Principal,
        function: &str,
        qualifier: Option<&str>,
        auth_type: Option<UrlAuthType>,
        cors: Option<Option<Cors>>,
        invoke_mode: Option<&str>,
    ) -> Result<UrlConfig, CoreError> {
        let function = self.authorize_on(by, Action::ChangeFunction, function)?;
        let alias = parse_alias(qualifier)?.map(str::to_owned);
        let update = UrlConfigUpdate {
            auth_type,
            invoke_mode: parse_invoke_mode(invoke_mode)?,
            cors,
        };
        validate_cors(update.cors.as_ref().and_then(Option::as_ref))?;
        let store = self.store.clone();
        let (f, a) = (function.clone(), alias.clone());
        let c = blocking(move || Ok(store.update_url_config(&f, a.as_deref(), &update)?)).await?;
        self.urls.invalidate(&(function.clone(), alias.clone()));
        let c = c.ok_or_else(|| Self::url_not_found(&function, alias.as_deref()))?;
        Ok(self.url_info(&c))
    }

    pub async fn delete_url_config(
        &self,
        by: &Principal,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<(), CoreError> {
        let op = async {
            let function = self.authorize_on(by, Action::ChangeFunction, function)?;
            let alias = parse_alias(qualifier)?.map(str::to_owned);
            let store = self.store.clone();
            let (f, a) = (function.clone(), alias.clone());
            let existed = blocking(move || Ok(store.delete_url_config(&f, a.as_deref())?)).await?;
            self.urls.invalidate(&(function.clone(), alias.clone()));
            if !existed {
                return Err(Self::url_not_found(&function, alias.as_deref()));
            }
            tracing::info!(function = %function, alias = ?alias, "function URL deleted");
            Ok(())
        };
        self.audited(
            by,
            AuditAction::UrlDelete,
            &url_target(function, qualifier),
            op,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualifiers_and_modes() {
        assert_eq!(parse_alias(None).ok(), Some(None));
        assert_eq!(parse_alias(Some("$LATEST")).ok(), Some(None));
        assert_eq!(parse_alias(Some("live")).ok(), Some(Some("live")));
        assert!(parse_alias(Some("3")).is_err());
        assert_eq!(parse_invoke_mode(None).ok(), Some(None));
        assert!(parse_invoke_mode(Some("RESPONSE_STREAM"))
            .unwrap_err()
            .to_string()
            .contains("not supported"));
        assert!(parse_invoke_mode(Some("buffered")).is_err());
    }
}
