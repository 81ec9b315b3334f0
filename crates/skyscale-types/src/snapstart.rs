//! SnapStart: which of a function's versions start from a snapshot taken after their init
//! (Lambda's `SnapStart.ApplyOn`), and whether one is in use (`OptimizationStatus`).

use std::fmt;

/// Lambda's `SnapStart.ApplyOn`. Skyscale applies `PublishedVersions` to the function's
/// `$LATEST` too (docs/lambda-compatibility.md, "SnapStart"): its snapshot is rebuilt after
/// every code or configuration change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SnapStart {
    #[default]
    None,
    PublishedVersions,
}

impl SnapStart {
    /// Lambda's words, also the `/v1` and CLI values: `None`, `PublishedVersions`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::PublishedVersions => "PublishedVersions",
        }
    }

    /// Parses Lambda's words; the error names the accepted values.
    pub fn parse(s: &str) -> Result<Self, String> {
        [Self::None, Self::PublishedVersions]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!("SnapStart ApplyOn {s:?} is not one of: PublishedVersions, None")
            })
    }

    pub fn is_on(self) -> bool {
        self == Self::PublishedVersions
    }
}

impl fmt::Display for SnapStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for SnapStart {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for SnapStart {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Lambda's `SnapStartResponse.OptimizationStatus`: whether invocations of this version
/// start from a snapshot now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OptimizationStatus {
    #[default]
    Off,
    On,
}

impl OptimizationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "Off",
            Self::On => "On",
        }
    }
}

impl serde::Serialize for OptimizationStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for OptimizationStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "On" => Ok(Self::On),
            "Off" => Ok(Self::Off),
            other => Err(serde::de::Error::custom(format!(
                "OptimizationStatus {other:?} is not On or Off"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_on_round_trips_and_refuses_by_name() {
        for v in [SnapStart::None, SnapStart::PublishedVersions] {
            assert_eq!(SnapStart::parse(v.as_str()), Ok(v));
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(serde_json::from_str::<SnapStart>(&json).unwrap(), v);
        }
        let err = SnapStart::parse("Always").unwrap_err();
        assert!(
            err.contains("Always") && err.contains("PublishedVersions"),
            "{err}"
        );
    }
}
