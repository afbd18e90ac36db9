//! Identifiers: UUID v7 newtypes (time-ordered, so ids sort by creation) and the subtask id,
//! which is stable across redeliveries because it is derived from its task and step.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0.hyphenated())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Uuid::parse_str(&s).map(Self).map_err(serde::de::Error::custom)
            }
        }
    };
}

uuid_id!(
    /// A network of agents.
    NetworkId
);
uuid_id!(
    /// A task submitted to a network.
    TaskId
);
uuid_id!(
    /// One agent of a network (the coordinator included).
    AgentId
);
uuid_id!(
    /// One shared-memory item.
    MemoryId
);

/// A subtask: step `step` of task `task`. Redelivery keeps the id, so results are idempotent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubtaskId {
    /// The task this subtask belongs to.
    pub task: TaskId,
    /// Its step number within the task, from 1.
    pub step: u32,
}

impl fmt::Display for SubtaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.task, self.step)
    }
}

impl fmt::Debug for SubtaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubtaskId({self})")
    }
}

impl Serialize for SubtaskId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SubtaskId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let (task, step) = s
            .rsplit_once('.')
            .ok_or_else(|| serde::de::Error::custom("subtask id is `<task_id>.<step>`"))?;
        Ok(Self {
            task: task.parse().map_err(serde::de::Error::custom)?,
            step: step.parse().map_err(serde::de::Error::custom)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_json_and_text() {
        let id = TaskId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        let back: TaskId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert_eq!(id.to_string().parse::<TaskId>().ok(), Some(id));
        let sub = SubtaskId { task: id, step: 3 };
        let json = serde_json::to_string(&sub).unwrap();
        let back: Option<SubtaskId> = serde_json::from_str(&json).ok();
        assert_eq!(back, Some(sub));
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = NetworkId::new();
        let b = NetworkId::new();
        assert!(a < b);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        assert!("nope".parse::<AgentId>().is_err());
        assert!(serde_json::from_str::<SubtaskId>("\"abc\"").is_err());
    }
}
