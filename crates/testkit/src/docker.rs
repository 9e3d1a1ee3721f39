//! Docker helpers for tests that run against the real Docker engine (through the `docker` CLI):
//! a throwaway image of a workspace binary built `FROM scratch` (nothing is pulled), and guards
//! that remove what a test created even when it fails.
//!
//! - [`docker`]: run one `docker` command, stdout on success, a readable error otherwise.
//! - [`docker_available`]: `Err(why)` when no Docker engine answers.
//! - [`require_docker`]: the first call of every Docker test: panics when no engine answers,
//!   unless `ACS_SKIP_DOCKER_TESTS=1` says to skip.
//! - [`unique_id`]: a short id unique to this test run, for worker ids, labels, tags, networks.
//! - [`TestImage`]: `FROM scratch` + a workspace binary + the shared objects it links; `docker
//!   rmi` on drop.
//! - [`ContainerGuard`]: every container matching some label filters (and name prefixes);
//!   `docker rm -f` on drop.
//! - [`NetworkGuard`]: a user-defined network; `docker network rm` on drop.
//! - [`sweep_stale`]: removes images and networks (label `acs.test=1`) of runs that were
//!   killed before their guards ran, once they are an hour old.
//!
//! Guards are plain values: declare them *before* whatever starts containers, so Rust drops
//! them last (after the processes that could still create containers are gone).

use std::path::Path;
use std::process::Command;

use crate::{workspace_bin, TempDir};

/// Runs `docker <args>`; `Ok(stdout)` (trimmed) on success, `Err("docker <args>: <stderr>")`.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The engine's version when a Docker engine answers `docker info`; the reason otherwise.
pub fn docker_available() -> Result<String, String> {
    docker(&["info", "--format", "{{.ServerVersion}}"])
}

/// The variable that skips the Docker tests, for machines without a Docker engine.
pub const SKIP_VAR: &str = "ACS_SKIP_DOCKER_TESTS";

/// The first call of every test that needs the Docker engine. `Some(engine version)`: run the
/// test. `None` (with a line on stderr saying so): `ACS_SKIP_DOCKER_TESTS=1` is set, the test
/// returns at once. Otherwise, when no engine answers `docker info`, it panics: a Docker test
/// must not pass without Docker.
pub fn require_docker() -> Option<String> {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED {test}: {SKIP_VAR}=1 (this Docker test ran nothing)");
        return None;
    }
    match docker_available() {
        Ok(version) => Some(version),
        Err(e) => panic!(
            "{test} needs a Docker engine, and none answers `docker info`: {e}\n\
             Start Docker (or point DOCKER_HOST at one), or set {SKIP_VAR}=1 to skip the Docker tests."
        ),
    }
}

/// `<tag><pid base36><nanos base36>`: lowercase letters and digits only, so it is valid in
/// worker ids, labels, image tags and network names. Unique per call within a process (the
/// nanosecond clock moves between calls) and across concurrent test processes (the pid).
pub fn unique_id(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = nanos.wrapping_add(SEQ.fetch_add(1, Ordering::Relaxed));
    format!(
        "{}{}{}",
        tag.to_ascii_lowercase(),
        base36(std::process::id() as u64),
        base36(n % 36u64.pow(6))
    )
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// Removes unused images and networks that tests made (label `acs.test=1`) more than an hour
/// ago: leftovers of runs that were killed before their guards ran. Best effort; only objects
/// nothing uses any more, and old enough that no test still running can own them.
pub fn sweep_stale() {
    for args in [
        &[
            "image",
            "prune",
            "-a",
            "-f",
            "--filter",
            "label=acs.test=1",
            "--filter",
            "until=1h",
        ][..],
        &[
            "network",
            "prune",
            "-f",
            "--filter",
            "label=acs.test=1",
            "--filter",
            "until=1h",
        ][..],
    ] {
        if let Err(e) = docker(args) {
            eprintln!("warning: cannot sweep stale test objects: {e}");
        }
    }
}

/// A local image built `FROM scratch` from a workspace binary; removed (`docker rmi`) on drop.
pub struct TestImage {
    tag: String,
}

impl TestImage {
    /// Builds `tag` from `target/<profile>/<bin>` (debug info stripped) plus the shared objects
    /// `ldd` lists, so the binary runs without a base image. The entrypoint is the binary;
    /// `port` is `EXPOSE`d. Panics when the binary is not built (with a hint).
    pub fn from_workspace_bin(bin: &str, tag: &str, port: u16) -> Result<TestImage, String> {
        let src = workspace_bin(bin);
        let ctx = TempDir::new("docker-image");
        let root = ctx.path().join("rootfs");
        std::fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;
        let dst = ctx.path().join("app");
        let stripped = Command::new("strip")
            .args(["--strip-debug", "-o"])
            .arg(&dst)
            .arg(&src)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !stripped {
            std::fs::copy(&src, &dst).map_err(|e| format!("copy {}: {e}", src.display()))?;
        }
        let ldd = Command::new("ldd")
            .arg(&src)
            .output()
            .map_err(|e| format!("ldd: {e}"))?;
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux... (0x...)`.
            let path = match line.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            let Some(path) = path.filter(|p| p.starts_with('/')) else {
                continue;
            };
            let target = root.join(path.trim_start_matches('/'));
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("create {}: {e}", parent.display()))?;
            }
            std::fs::copy(Path::new(path), &target).map_err(|e| format!("copy {path}: {e}"))?;
        }
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!(
                "FROM scratch\nCOPY rootfs/ /\nCOPY app /app\nUSER 10001\nEXPOSE {port}\nENTRYPOINT [\"/app\"]\n"
            ),
        )
        .map_err(|e| format!("write Dockerfile: {e}"))?;
        let ctx_dir = ctx.path().to_str().ok_or("temp dir is not UTF-8")?;
        // The guard exists before the build, so a half-done build is cleaned up too.
        let image = TestImage {
            tag: tag.to_string(),
        };
        docker(&["build", "-q", "--label", "acs.test=1", "-t", tag, ctx_dir])?;
        Ok(image)
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        // Without -f: an image still used by a container (of another run) stays; with other
        // tags on the same image id, only this tag goes.
        if let Err(e) = docker(&["rmi", &self.tag]) {
            if !e.contains("No such image") {
                eprintln!("warning: cannot remove test image: {e}");
            }
        }
    }
}

/// Removes (`docker rm -f`) every container matching any of its label filters or name
/// prefixes on drop, and on [`remove_all`](Self::remove_all).
#[derive(Debug, Default)]
pub struct ContainerGuard {
    labels: Vec<String>,
    name_prefixes: Vec<String>,
}

impl ContainerGuard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Also own containers labelled `key=value`.
    pub fn label(&mut self, key: &str, value: &str) -> &mut Self {
        self.labels.push(format!("{key}={value}"));
        self
    }

    /// Also own containers whose name starts with `prefix`.
    pub fn name_prefix(&mut self, prefix: &str) -> &mut Self {
        self.name_prefixes.push(prefix.to_string());
        self
    }

    /// Ids of the containers with label `key=value`, running or not (`docker ps -aq`).
    pub fn ids_with_label(key: &str, value: &str) -> Result<Vec<String>, String> {
        let out = docker(&[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label={key}={value}"),
        ])?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// Every container this guard owns (full ids, sorted, deduplicated).
    pub fn ids(&self) -> Result<Vec<String>, String> {
        let mut ids = Vec::new();
        for l in &self.labels {
            let out = docker(&["ps", "-aq", "--no-trunc", "--filter", &format!("label={l}")])?;
            ids.extend(out.lines().map(str::to_string));
        }
        for p in &self.name_prefixes {
            // `name=` matches anywhere in the name: keep only real prefixes.
            let out = docker(&[
                "ps",
                "-a",
                "--no-trunc",
                "--filter",
                &format!("name={p}"),
                "--format",
                "{{.ID}} {{.Names}}",
            ])?;
            ids.extend(out.lines().filter_map(|l| {
                let (id, name) = l.split_once(' ')?;
                name.trim_start_matches('/')
                    .starts_with(p.as_str())
                    .then(|| id.to_string())
            }));
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// `docker rm -f` every owned container; the ids it removed.
    pub fn remove_all(&self) -> Vec<String> {
        let ids = match self.ids() {
            Ok(ids) => ids,
            Err(e) => {
                eprintln!("warning: cannot list test containers: {e}");
                return Vec::new();
            }
        };
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            if let Err(e) = docker(&args) {
                if !e.contains("No such container") {
                    eprintln!("warning: cannot remove test containers: {e}");
                }
            }
        }
        ids
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let left = self.remove_all();
        if !left.is_empty() {
            eprintln!("test cleanup: removed {} leftover container(s)", left.len());
        }
    }
}

/// A user-defined Docker network, removed on drop (after its containers are gone).
#[derive(Debug)]
pub struct NetworkGuard {
    name: String,
}

impl NetworkGuard {
    /// `docker network create --label acs.test=1 <name>`.
    pub fn create(name: &str) -> Result<NetworkGuard, String> {
        docker(&["network", "create", "--label", "acs.test=1", name])?;
        Ok(NetworkGuard {
            name: name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        // Containers still attached make this fail: force them off first.
        if let Ok(ids) = docker(&["ps", "-aq", "--filter", &format!("network={}", self.name)]) {
            for id in ids.lines() {
                let _ = docker(&["rm", "-f", id]);
            }
        }
        if let Err(e) = docker(&["network", "rm", &self.name]) {
            if !e.contains("not found") {
                eprintln!("warning: cannot remove test network: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_ids_are_unique_and_plain() {
        let a = unique_id("E2e");
        let b = unique_id("E2e");
        assert_ne!(a, b);
        assert!(a.starts_with("e2e"), "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{a}"
        );
        assert!(a.len() <= 3 + 7 + 6, "{a}");
    }

    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }
}
