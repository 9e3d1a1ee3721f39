//! What must survive a brain restart: manual pins (`acs.cmd.scale`). Everything else is rebuilt
//! from the workers' metrics during warm-up. Kept in a small JSON file (`--state-file`), written
//! atomically (temporary file, then rename) on every manual scale.

use std::collections::BTreeMap;
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

/// Reads the pins; a missing file means none.
pub fn load(path: &Path) -> Result<BTreeMap<ServiceName, u32>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<Saved>(&bytes)
            .map(|s| s.manual)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes the world's pins.
pub fn save(path: &Path, world: &World) -> Result<(), String> {
    let saved = Saved {
        v: acs_events::SCHEMA_VERSION,
        manual: world.pins().map(|(service, n)| (service.clone(), n)).collect(),
    };
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&tmp, serde_json::to_vec_pretty(&saved).expect("serializes"))?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("{}: {e}", path.display()))
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
        std::fs::write(&path, b"{\"manual\":{\"w.b\":1}}").unwrap();
        assert!(load(&path).unwrap_err().contains("service name"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
