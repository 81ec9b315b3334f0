//! Text output of schedules.

use std::fmt::Write as _;

use skyscale_types::schedules::ScheduleInfo;

/// One line per schedule: name, state, function, expression, zone, next fire.
pub fn schedules_table(list: &[ScheduleInfo]) -> String {
    if list.is_empty() {
        return "no schedules\n".to_owned();
    }
    let mut out = format!(
        "{:<24}  {:<8}  {:<24}  {:<28}  {:<16}  {}\n",
        "NAME", "STATE", "FUNCTION", "EXPRESSION", "TIMEZONE", "NEXT FIRE"
    );
    for s in list {
        let function = match &s.qualifier {
            Some(q) => format!("{}:{q}", s.function),
            None => s.function.clone(),
        };
        let _ = writeln!(
            out,
            "{:<24}  {:<8}  {:<24}  {:<28}  {:<16}  {}",
            s.name,
            s.state.as_str(),
            function,
            s.expression,
            s.timezone,
            s.next_fire_at.as_deref().unwrap_or("-")
        );
    }
    out
}

/// One schedule, a field a line.
pub fn schedule_detail(s: &ScheduleInfo) -> String {
    let payload = match &s.payload {
        Some(p) => p.to_string(),
        None => "EventBridge Scheduled Event document".to_owned(),
    };
    let mut out = String::new();
    for (k, v) in [
        ("name", s.name.as_str()),
        ("arn", &s.arn),
        ("function", &s.function),
        ("qualifier", s.qualifier.as_deref().unwrap_or("$LATEST")),
        ("expression", &s.expression),
        ("timezone", &s.timezone),
        ("state", s.state.as_str()),
        ("missed fires", s.missed.as_str()),
        ("payload", &payload),
        ("last fired", s.last_fired_at.as_deref().unwrap_or("-")),
        ("next fire", s.next_fire_at.as_deref().unwrap_or("-")),
        ("created", &s.created_at),
        ("updated", &s.updated_at),
    ] {
        let _ = writeln!(out, "{k:<13} {v}");
    }
    out
}
