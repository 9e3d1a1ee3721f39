//! Secrets by name: `spec.secrets` maps an environment variable to a secret name, and the value
//! is the file `<secrets dir>/<name>` on this host (one trailing newline trimmed). Names are
//! checked ([`acs_events::check_secret_name`]: a plain file name), so no `../` leaves the dir.
//! Errors name the secret, never its value.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use super::Refused;

/// Largest secret file read.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// The values of `secrets` (env var → secret name) as env var → value.
pub fn resolve(
    dir: Option<&Path>,
    secrets: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Refused> {
    let mut out = BTreeMap::new();
    for (var, name) in secrets {
        acs_events::check_secret_name(name).map_err(Refused::Invalid)?;
        let Some(dir) = dir else {
            return Err(Refused::Secret(format!(
                "the spec asks for secret {name:?} but this worker has no secrets dir (set --secrets-dir or ACS_SECRETS_DIR)"
            )));
        };
        out.insert(var.clone(), read(dir, name)?);
    }
    Ok(out)
}

fn read(dir: &Path, name: &str) -> Result<String, Refused> {
    let path = dir.join(name);
    let fail = |why: String| Refused::Secret(format!("secret {name:?}: {why}"));
    let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => fail(format!("not found in {}", dir.display())),
        _ => fail(format!("cannot read {}: {e}", path.display())),
    })?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail(format!("{} is not a file", path.display())));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(fail(format!("larger than {MAX_SECRET_BYTES} bytes")));
    }
    let mut value = String::from_utf8(bytes).map_err(|_| fail("is not UTF-8".into()))?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.contains('\0') {
        return Err(fail("contains a NUL byte".into()));
    }
    Ok(value)
}
