//! Asynchronous invocation (`/v1`): the async invoke, a function's events and dead letters,
//! redrives, and event invoke configurations.

use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use skyscale_types::events::{
    AsyncAccepted, EventConfigInfo, EventConfigList, EventConfigRequest, EventEntry, EventList,
    RedriveRequest, Redriven, IDEMPOTENCY_KEY_HEADER, INVOCATION_TYPE_HEADER,
};

use super::{function_name, Client};
use crate::ClientError;

impl Client {
    /// `POST /v1/functions/{name}/invoke` with `x-skyscale-invocation-type: Event`: the event
    /// is committed when this returns. The same `idempotency_key` again (within the server's
    /// window) answers the first event's id.
    pub fn invoke_async(
        &self,
        name: &str,
        qualifier: Option<&str>,
        idempotency_key: Option<&str>,
        payload: Vec<u8>,
    ) -> Result<AsyncAccepted, ClientError> {
        let name = function_name(name)?;
        let mut req = self
            .request(
                Method::POST,
                &["v1", "functions", name.as_str(), "invoke"],
                true,
            )?
            .header(INVOCATION_TYPE_HEADER, "Event")
            .header(CONTENT_TYPE, "application/json");
        if let Some(q) = qualifier {
            req = req.query(&[("qualifier", q)]);
        }
        if let Some(k) = idempotency_key {
            req = req.header(IDEMPOTENCY_KEY_HEADER, k);
        }
        self.json(
            self.send(req.body(payload))?,
            "POST /v1/functions/{name}/invoke (Event)",
        )
    }

    /// `GET /v1/functions/{name}/events`: oldest first; `status` `queued`, `retrying` or
    /// `dead` (all when `None`).
    pub fn list_events(
        &self,
        name: &str,
        status: Option<&str>,
        limit: Option<usize>,
    ) -> Result<EventList, ClientError> {
        let name = function_name(name)?;
        let mut req = self.request(
            Method::GET,
            &["v1", "functions", name.as_str(), "events"],
            true,
        )?;
        if let Some(s) = status {
            req = req.query(&[("status", s)]);
        }
        if let Some(n) = limit {
            req = req.query(&[("limit", n)]);
        }
        self.json(self.send(req)?, "GET /v1/functions/{name}/events")
    }

    /// `GET /v1/events/{id}`: with its payload and, for a dead letter, its record.
    pub fn get_event(&self, id: &str) -> Result<EventEntry, ClientError> {
        let req = self.request(Method::GET, &["v1", "events", id], true)?;
        self.json(self.send(req)?, "GET /v1/events/{id}")
    }

    /// `DELETE /v1/events/{id}`: deletes a dead letter.
    pub fn delete_event(&self, id: &str) -> Result<(), ClientError> {
        let req = self.request(Method::DELETE, &["v1", "events", id], true)?;
        self.send(req)?;
        Ok(())
    }

    /// `POST /v1/functions/{name}/events/redrive`: one dead letter (`id`) or all (`None`).
    pub fn redrive(&self, name: &str, id: Option<&str>) -> Result<Redriven, ClientError> {
        let name = function_name(name)?;
        let body = RedriveRequest {
            id: id.map(str::to_owned),
            all: id.is_none(),
        };
        let req = self
            .request(
                Method::POST,
                &["v1", "functions", name.as_str(), "events", "redrive"],
                true,
            )?
            .json(&body);
        self.json(self.send(req)?, "POST /v1/functions/{name}/events/redrive")
    }

    fn event_config_request(
        &self,
        method: Method,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<reqwest::blocking::RequestBuilder, ClientError> {
        let name = function_name(name)?;
        let req = self.request(
            method,
            &["v1", "functions", name.as_str(), "event-config"],
            true,
        )?;
        Ok(match qualifier {
            Some(q) => req.query(&[("qualifier", q)]),
            None => req,
        })
    }

    /// `GET /v1/functions/{name}/event-config`.
    pub fn get_event_config(
        &self,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<EventConfigInfo, ClientError> {
        let req = self.event_config_request(Method::GET, name, qualifier)?;
        self.json(self.send(req)?, "GET /v1/functions/{name}/event-config")
    }

    /// `PUT /v1/functions/{name}/event-config`: replaces the whole configuration.
    pub fn put_event_config(
        &self,
        name: &str,
        qualifier: Option<&str>,
        config: &EventConfigRequest,
    ) -> Result<EventConfigInfo, ClientError> {
        let req = self
            .event_config_request(Method::PUT, name, qualifier)?
            .json(config);
        self.json(self.send(req)?, "PUT /v1/functions/{name}/event-config")
    }

    /// `DELETE /v1/functions/{name}/event-config`.
    pub fn delete_event_config(
        &self,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<(), ClientError> {
        let req = self.event_config_request(Method::DELETE, name, qualifier)?;
        self.send(req)?;
        Ok(())
    }

    /// `GET /v1/functions/{name}/event-configs`.
    pub fn list_event_configs(&self, name: &str) -> Result<EventConfigList, ClientError> {
        let name = function_name(name)?;
        let req = self.request(
            Method::GET,
            &["v1", "functions", name.as_str(), "event-configs"],
            true,
        )?;
        self.json(self.send(req)?, "GET /v1/functions/{name}/event-configs")
    }
}
