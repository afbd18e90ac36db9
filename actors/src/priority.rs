//! Task priority: 1 (highest) to 5 (lowest), default 3. It travels with the work to every hop.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A task's priority, 1 (highest) to 5 (lowest).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Priority(u8);

impl Priority {
    /// The highest priority, 1.
    pub const HIGHEST: Priority = Priority(1);
    /// The lowest priority, 5.
    pub const LOWEST: Priority = Priority(5);
    /// The default priority, 3.
    pub const DEFAULT: Priority = Priority(3);
    /// How many levels there are.
    pub const LEVELS: usize = 5;

    /// A priority from its number, if it is 1..=5.
    pub fn new(level: u8) -> Option<Self> {
        (1..=5).contains(&level).then_some(Self(level))
    }

    /// The number, 1..=5.
    pub fn get(self) -> u8 {
        self.0
    }

    /// A zero-based index, 0 for the highest priority.
    pub fn index(self) -> usize {
        usize::from(self.0 - 1)
    }

    /// The priority at a zero-based index, clamped to the valid range.
    pub fn from_index(index: usize) -> Self {
        Self(u8::try_from(index.min(Self::LEVELS - 1)).unwrap_or(4) + 1)
    }
}

impl Default for Priority {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<u8> for Priority {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, Self::Error> {
        Self::new(v).ok_or_else(|| format!("priority must be 1 (highest) to 5 (lowest), got {v}"))
    }
}

impl From<Priority> for u8 {
    fn from(p: Priority) -> u8 {
        p.0
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_to_five_are_priorities() {
        assert!(Priority::new(0).is_none());
        assert!(Priority::new(6).is_none());
        assert_eq!(Priority::new(1), Some(Priority::HIGHEST));
        assert_eq!(Priority::default().get(), 3);
        assert_eq!(Priority::HIGHEST.index(), 0);
        assert_eq!(Priority::from_index(9), Priority::LOWEST);
        assert!(serde_json::from_str::<Priority>("7").is_err());
        assert_eq!(serde_json::from_str::<Priority>("2").ok(), Priority::new(2));
    }
}
