use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};

use acs_testkit::TempDir;

use super::*;

fn spec(v: serde_json::Value) -> ReplicaSpec {
    serde_json::from_value(v).unwrap()
}

/// `<dir>/bin/good` and `<dir>/bin/evil`, both executable.
fn programs() -> TempDir {
    let dir = TempDir::new("policy");
    let bin = dir.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    for name in ["good", "evil"] {
        let p = bin.join(name);
        fs::write(&p, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn allowing(commands: &[&Path]) -> Policy {
    Policy {
        allow_commands: commands.iter().map(|p| p.to_path_buf()).collect(),
        ..Policy::default()
    }
}

#[test]
fn images_match_exactly_or_by_prefix() {
    let p = Policy {
        allow_images: vec!["acs/demo-web:*".into(), "nginx:1.25".into()],
        ..Policy::default()
    };
    let admit = |image: &str| {
        p.admit(
            RuntimeKind::Docker,
            spec(serde_json::json!({"service": "web", "image": image})),
            None,
        )
    };
    assert!(admit("acs/demo-web:dev").is_ok());
    assert!(admit("nginx:1.25").is_ok());
    for bad in [
        "nginx:latest",
        "nginx",
        "evil/acs/demo-web:dev",
        "acs/demo-webx:1",
    ] {
        let err = admit(bad).unwrap_err();
        assert_eq!(err.kind(), Some("forbidden"), "{bad}");
        assert_eq!(
            err.to_string(),
            format!("image {bad:?} is not on this worker's allow-list (--allow-image acs/demo-web:*,nginx:1.25)")
        );
    }
    // No image: the runtime's own error ("has no image") decides.
    let none = spec(serde_json::json!({"service": "web", "command": ["x"]}));
    assert!(p.admit(RuntimeKind::Docker, none, None).is_ok());
}

#[test]
fn nothing_is_allowed_by_default_and_the_refusal_names_the_flag() {
    let p = Policy::default();
    let err = p
        .admit(
            RuntimeKind::Docker,
            spec(serde_json::json!({"service": "web", "image": "a:1"})),
            None,
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("allows no images (set --allow-image or ACS_ALLOW_IMAGES)"),
        "{err}"
    );
    let err = p
        .admit(
            RuntimeKind::Process,
            spec(serde_json::json!({"service": "web", "command": ["/bin/sh"]})),
            None,
        )
        .unwrap_err();
    assert_eq!(err.kind(), Some("forbidden"));
    assert!(
        err.to_string()
            .contains("allows no commands (set --allow-command or ACS_ALLOW_COMMANDS)"),
        "{err}"
    );
}

#[test]
fn programs_are_judged_by_their_canonical_path() {
    let dir = programs();
    let bin = dir.path().join("bin");
    let (good, evil) = (bin.join("good"), bin.join("evil"));
    let p = allowing(&[&good]);
    let path = Some(bin.as_os_str());
    let admit = |program: &str| {
        p.admit(
            RuntimeKind::Process,
            spec(serde_json::json!({"service": "web", "command": [program, "--port", "{port}"]})),
            path,
        )
    };
    let canonical = fs::canonicalize(&good)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // Through PATH, by absolute path, through `..`, through a symlink: the canonical path runs.
    let dotted = format!("{}/../bin/good", bin.display());
    let link = dir.path().join("link-to-good");
    symlink(&good, &link).unwrap();
    for ok in [
        "good",
        good.to_str().unwrap(),
        dotted.as_str(),
        link.to_str().unwrap(),
    ] {
        let admitted = admit(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(
            admitted.command,
            [canonical.as_str(), "--port", "{port}"],
            "{ok}"
        );
    }
    // Neither `..` nor a symlink leads from an allowed path to another program.
    let escape = format!("{}/../bin/evil", bin.display());
    let evil_link = dir.path().join("good");
    symlink(&evil, &evil_link).unwrap();
    for bad in [
        "evil",
        evil.to_str().unwrap(),
        escape.as_str(),
        evil_link.to_str().unwrap(),
    ] {
        let err = admit(bad).unwrap_err();
        assert_eq!(err.kind(), Some("forbidden"), "{bad}: {err}");
        assert!(
            err.to_string()
                .contains("is not on this worker's allow-list (--allow-command "),
            "{err}"
        );
    }
    // An allowed entry that is itself a symlink allows its target.
    let p = allowing(&[&link]);
    let s = spec(serde_json::json!({"service": "web", "command": [good.to_str().unwrap()]}));
    assert!(p.admit(RuntimeKind::Process, s, None).is_ok());
    // A program that does not exist is a plain error, not a policy refusal.
    let err = admit("no-such-program").unwrap_err();
    assert_eq!(err.kind(), None);
    assert!(err.to_string().contains("not found in PATH"), "{err}");
}

#[test]
fn loader_variables_are_refused_with_both_runtimes() {
    let p = Policy {
        allow_images: vec!["*".into()],
        ..Policy::default()
    };
    let s = spec(
        serde_json::json!({"service": "web", "image": "a:1", "env": {"LD_PRELOAD": "/tmp/x.so"}}),
    );
    let err = p.admit(RuntimeKind::Docker, s, None).unwrap_err();
    assert_eq!(
        err,
        Refused::Forbidden(
            "environment variable LD_PRELOAD is refused: it changes how programs load or run"
                .into()
        )
    );
    let dir = programs();
    let good = dir.path().join("bin/good");
    let s = spec(
        serde_json::json!({"service": "web", "command": [good], "env": {"GLIBC_TUNABLES": "x"}}),
    );
    let err = allowing(&[&good])
        .admit(RuntimeKind::Process, s, None)
        .unwrap_err();
    assert_eq!(err.kind(), Some("forbidden"));
}

#[test]
fn secrets_are_read_from_the_secrets_dir() {
    let dir = TempDir::new("secrets");
    fs::write(dir.path().join("db"), "hunter2\n").unwrap();
    fs::write(dir.path().join("crlf"), "a b\r\n").unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    let wanted = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let got = secrets::resolve(
        Some(dir.path()),
        &wanted(&[("DB_PASSWORD", "db"), ("X", "crlf")]),
    )
    .unwrap();
    assert_eq!(got, wanted(&[("DB_PASSWORD", "hunter2"), ("X", "a b")]));

    let err = secrets::resolve(Some(dir.path()), &wanted(&[("A", "nope")])).unwrap_err();
    assert_eq!(err.kind(), Some("secret"));
    assert_eq!(
        err.to_string(),
        format!("secret \"nope\": not found in {}", dir.path().display())
    );
    let err = secrets::resolve(Some(dir.path()), &wanted(&[("A", "sub")])).unwrap_err();
    assert!(err.to_string().contains("is not a file"), "{err}");
    let err = secrets::resolve(Some(dir.path()), &wanted(&[("A", "../db")])).unwrap_err();
    assert_eq!(err.kind(), None, "{err}");
    let err = secrets::resolve(None, &wanted(&[("A", "db")])).unwrap_err();
    assert!(
        err.to_string()
            .contains("no secrets dir (set --secrets-dir or ACS_SECRETS_DIR)"),
        "{err}"
    );

    // Through `admit`: values land in env, never in an error.
    let p = Policy {
        allow_images: vec!["a:*".into()],
        secrets_dir: Some(dir.path().to_path_buf()),
        ..Policy::default()
    };
    let s = spec(
        serde_json::json!({"service": "web", "image": "a:1", "env": {"K": "v"}, "secrets": {"DB": "db"}}),
    );
    let admitted = p.admit(RuntimeKind::Docker, s, None).unwrap();
    assert_eq!(admitted.env, wanted(&[("DB", "hunter2"), ("K", "v")]));
}

#[test]
fn validation_checks_entries_and_normalises_caps() {
    let p = Policy {
        allow_images: vec!["acs/demo-web:*".into()],
        allow_commands: vec!["/usr/bin/true".into()],
        allow_caps: vec![
            "cap_net_bind_service".into(),
            "NET_BIND_SERVICE".into(),
            "chown".into(),
        ],
        secrets_dir: None,
    };
    p.validate().unwrap();
    assert_eq!(p.docker_caps(), ["CHOWN", "NET_BIND_SERVICE"]);
    let bad = |f: fn(&mut Policy)| {
        let mut p = Policy::default();
        f(&mut p);
        assert!(p.docker_caps().is_empty());
        p.validate().unwrap_err()
    };
    assert!(bad(|p| p.allow_images = vec!["a*b".into()]).contains("--allow-image"));
    assert!(bad(|p| p.allow_images = vec!["".into()]).contains("--allow-image"));
    assert!(bad(|p| p.allow_commands = vec!["bin/demo-web".into()]).contains("absolute"));
    assert!(
        bad(|p| p.allow_caps = vec!["SYS_EVERYTHING".into()]).contains("not a Linux capability")
    );
}

#[test]
fn policy_files_add_to_the_flags() {
    let dir = TempDir::new("policy-file");
    let file = dir.path().join("policy.toml");
    fs::write(
        &file,
        "allow_images = [\"b:*\"]\nallow_commands = [\"/bin/x\"]\nsecrets_dir = \"/s\"\n",
    )
    .unwrap();
    let mut p = Policy {
        allow_images: vec!["a:1".into()],
        ..Policy::default()
    };
    p.merge(PolicyFile::load(&file).unwrap());
    assert_eq!(p.allow_images, ["a:1", "b:*"]);
    assert_eq!(p.allow_commands, [PathBuf::from("/bin/x")]);
    assert_eq!(p.secrets_dir, Some(PathBuf::from("/s")));
    fs::write(&file, "allow_image = [\"b:*\"]\n").unwrap();
    let err = PolicyFile::load(&file).unwrap_err();
    assert!(err.contains("unknown field `allow_image`"), "{err}");
}
