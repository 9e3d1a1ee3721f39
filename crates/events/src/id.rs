//! Identifiers that end up inside NATS subjects.
//!
//! A NATS subject token cannot contain `.` (the separator), `*` or `>` (wildcards) or whitespace.
//! We go further and accept only `[A-Za-z0-9_-]`, 1..=64 bytes, so an id is also a safe container
//! name, label value and file name. Validation happens in `Deserialize`, so a message with a bad id
//! never exists in memory.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest id we accept, in bytes.
pub const MAX_ID_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} {value:?} is longer than {MAX_ID_LEN} bytes")]
    TooLong { kind: &'static str, value: String },
    #[error("{kind} {value:?} contains {ch:?}; only letters, digits, '-' and '_' are allowed (ids become NATS subject tokens)")]
    BadChar {
        kind: &'static str,
        value: String,
        ch: char,
    },
}

/// Checks `value` against the id rules; `kind` names the id in the error message.
pub fn validate_id(kind: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            value: truncate(value),
        });
    }
    if let Some(ch) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(IdError::BadChar {
            kind,
            value: value.to_string(),
            ch,
        });
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_ID_LEN).chain("…".chars()).collect()
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                validate_id($kind, &value)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A vmm-worker (one per host).
    WorkerId,
    "worker id"
);
id_type!(
    /// A service declared in the brain's services file, e.g. `web`.
    ServiceName,
    "service name"
);
id_type!(
    /// One running copy of a service. Assigned by the brain, unique across the cluster.
    ReplicaId,
    "replica id"
);
id_type!(
    /// A proxy instance.
    ProxyId,
    "proxy id"
);
id_type!(
    /// A command id: commands are idempotent by it.
    CommandId,
    "command id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_tokens() {
        assert!(WorkerId::new("w1").is_ok());
        assert!(ServiceName::new("web_api-2").is_ok());
    }

    #[test]
    fn rejects_subject_metacharacters() {
        for bad in ["a.b", "a*", ">", "a b", "a\tb", "", "ü"] {
            let err = ServiceName::new(bad).unwrap_err();
            assert!(!err.to_string().is_empty(), "{bad:?}");
        }
        let err = ServiceName::new("a.b").unwrap_err().to_string();
        assert!(err.contains("'.'"), "{err}");
        assert!(ServiceName::new("x".repeat(65)).is_err());
    }

    #[test]
    fn validates_on_deserialize() {
        let err = serde_json::from_str::<WorkerId>("\"w.1\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker id"), "{err}");
    }
}
