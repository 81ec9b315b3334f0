//! Schedules (`/v1/schedules`): a function invoked asynchronously at the slots of a cron,
//! rate or at expression.

use reqwest::Method;
use skyscale_types::schedules::{CreateSchedule, ScheduleInfo, ScheduleList, UpdateSchedule};

use super::Client;
use crate::ClientError;

impl Client {
    /// `POST /v1/schedules`.
    pub fn create_schedule(&self, create: &CreateSchedule) -> Result<ScheduleInfo, ClientError> {
        let req = self
            .request(Method::POST, &["v1", "schedules"], true)?
            .json(create);
        self.json(self.send(req)?, "POST /v1/schedules")
    }

    /// `GET /v1/schedules`: those of the functions the key may read, by name.
    pub fn list_schedules(&self) -> Result<ScheduleList, ClientError> {
        let req = self.request(Method::GET, &["v1", "schedules"], true)?;
        self.json(self.send(req)?, "GET /v1/schedules")
    }

    /// `GET /v1/schedules/{name}`.
    pub fn get_schedule(&self, name: &str) -> Result<ScheduleInfo, ClientError> {
        let req = self.request(Method::GET, &["v1", "schedules", name], true)?;
        self.json(self.send(req)?, "GET /v1/schedules/{name}")
    }

    /// `PATCH /v1/schedules/{name}`: the fields given change.
    pub fn update_schedule(
        &self,
        name: &str,
        update: &UpdateSchedule,
    ) -> Result<ScheduleInfo, ClientError> {
        let req = self
            .request(Method::PATCH, &["v1", "schedules", name], true)?
            .json(update);
        self.json(self.send(req)?, "PATCH /v1/schedules/{name}")
    }

    /// `POST /v1/schedules/{name}/pause` (`enabled: false`) or `/resume`.
    pub fn set_schedule_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<ScheduleInfo, ClientError> {
        let verb = if enabled { "resume" } else { "pause" };
        let req = self.request(Method::POST, &["v1", "schedules", name, verb], true)?;
        self.json(self.send(req)?, "POST /v1/schedules/{name}/pause|resume")
    }

    /// `DELETE /v1/schedules/{name}`.
    pub fn delete_schedule(&self, name: &str) -> Result<(), ClientError> {
        let req = self.request(Method::DELETE, &["v1", "schedules", name], true)?;
        self.send(req)?;
        Ok(())
    }
}
