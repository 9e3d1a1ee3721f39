//! What must survive a brain restart: manual pins (`acs.cmd.scale`). Everything else is rebuilt
//! from the workers' metrics during warm-up. Kept in a small JSON file (`--state-file`), written
//! atomically and durably on every manual scale: a temporary file, fsynced, renamed over the
//! old one, then the directory fsynced, so a crash leaves the old pins or the new ones.
//!
//! A file that cannot be read or parsed is an error, never "no pins": the brain refuses to
//! start and says which file, what is wrong, and how to fix it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use acs_events::ServiceName;
use serde::{Deserialize, Serialize};

use crate::world::World;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    #[serde(default)]
    v: u32,
    /// Service -> pinned replica count.
    #[serde(default)]
    manual: BTreeMap<ServiceName, u32>,
}

/// Why the state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state file {path}: {source}; fix its permissions, or point --state-file elsewhere")]
    Read { path: String, source: std::io::Error },
    #[error(
        "the state file {path} is corrupt ({message}); the brain does not start rather than silently drop \
         the manual pins it holds: repair it (JSON like {{\"v\":1,\"manual\":{{\"web\":3}}}}), or remove it to \
         start with no pins"
    )]
    Corrupt { path: String, message: String },
    #[error("cannot write the state file {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// Reads the pins; a missing file means none; an unreadable or corrupt one is an error.
pub fn load(path: &Path) -> Result<BTreeMap<ServiceName, u32>, StateError> {
    let p = || path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<Saved>(&bytes)
            .map(|s| s.manual)
            .map_err(|e| StateError::Corrupt { path: p(), message: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(source) => Err(StateError::Read { path: p(), source }),
    }
}

/// Writes the world's pins, durably (see the module's doc).
pub fn save(path: &Path, world: &World) -> Result<(), StateError> {
    let saved = Saved {
        v: acs_events::SCHEMA_VERSION,
        manual: world.pins().map(|(service, n)| (service.clone(), n)).collect(),
    };
    let tmp = path.with_extension("tmp");
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(&saved).expect("serializes"))?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable only once the directory is.
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|source| StateError::Write { path: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{Event, Now, Settings};

    #[test]
    fn round_trip_and_missing_file() {
        let dir = std::env::temp_dir().join(format!("acs-brain-state-{}", std::process::id()));
        let path = dir.join("state.json");
        assert!(load(&path).unwrap().is_empty());
        let mut w = World::new(Settings::default(), Now { mono: 0, unix_ms: 0 });
        w.apply(Event::Pin { service: "web".parse().unwrap(), replicas: Some(3) }, 0);
        w.apply(Event::Pin { service: "api".parse().unwrap(), replicas: None }, 0);
        save(&path, &w).unwrap();
        let pins = load(&path).unwrap();
        assert_eq!(pins.len(), 1);
        assert_eq!(pins[&"web".parse::<ServiceName>().unwrap()], 3);
        assert!(!path.with_extension("tmp").exists(), "the temporary file was renamed");
        std::fs::write(&path, b"{\"manual\":{\"w.b\":1}}").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("service name"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_corrupt_file_is_an_error_that_says_which_file_and_how_to_fix_it() {
        let dir = std::env::temp_dir().join(format!("acs-brain-corrupt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        for bad in [&b"{\"manual\":{\"web\":"[..], b"", b"{\"manual\":{\"web\":-1}}", b"{\"pins\":{}}"] {
            std::fs::write(&path, bad).unwrap();
            let e = load(&path).unwrap_err();
            assert!(matches!(e, StateError::Corrupt { .. }), "{e:?}");
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("repair it") && msg.contains("remove it"), "{msg}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
