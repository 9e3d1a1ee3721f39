//! Encoding and decoding with bounds and validation.
//!
//! Every subscriber decodes through [`decode`], so bad input always becomes a [`DecodeError`]
//! whose `Display` is fit to send back to a user (`{"ok":false,"error":"..."}`) or to log.

use serde::{de::DeserializeOwned, Serialize};

use crate::SCHEMA_VERSION;

/// Largest payload any subscriber accepts by default (256 KiB). NATS's own default is 1 MiB; we
/// refuse earlier so that one bad publisher cannot make every component parse megabytes.
pub const MAX_PAYLOAD: usize = 256 * 1024;

/// Semantic checks beyond what the types enforce (ranges, cross-field rules, schema version).
pub trait Validate {
    fn validate(&self) -> Result<(), String>;
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is {size} bytes, more than the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("payload is empty; expected a JSON object")]
    Empty,
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("schema version {found} is newer than this build understands ({max})")]
    Version { found: u32, max: u32 },
    #[error("{0}")]
    Invalid(String),
}

impl DecodeError {
    /// Short machine-readable reason, used as a counter label.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Empty => "empty",
            DecodeError::Json(e) if e.is_syntax() || e.is_eof() => "bad_json",
            DecodeError::Json(_) => "bad_field",
            DecodeError::Version { .. } => "version",
            DecodeError::Invalid(_) => "invalid",
        }
    }
}

/// Messages that carry a schema version field `v`.
pub trait Versioned {
    fn version(&self) -> u32;
    /// The newest version this build reads for the type: [`SCHEMA_VERSION`] unless a type's
    /// format moved on alone (a split proxy report is version 2, see [`crate::PARTS_VERSION`]).
    fn max_version() -> u32
    where
        Self: Sized,
    {
        SCHEMA_VERSION
    }
}

/// Decodes `bytes` as `T` with the default size bound, then validates it.
pub fn decode<T>(bytes: &[u8]) -> Result<T, DecodeError>
where
    T: DeserializeOwned + Validate + Versioned,
{
    decode_with_limit(bytes, MAX_PAYLOAD)
}

pub fn decode_with_limit<T>(bytes: &[u8], limit: usize) -> Result<T, DecodeError>
where
    T: DeserializeOwned + Validate + Versioned,
{
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty);
    }
    let value: T = serde_json::from_slice(bytes)?;
    if value.version() > T::max_version() {
        return Err(DecodeError::Version {
            found: value.version(),
            max: T::max_version(),
        });
    }
    value.validate().map_err(DecodeError::Invalid)?;
    Ok(value)
}

/// Encodes a message as JSON. Our own types always serialize; a failure here is a bug.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    serde_json::to_vec(msg).expect("acs-events messages always serialize")
}
