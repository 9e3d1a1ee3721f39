//! What a [`ReplicaSpec`] means once it runs, the same for every runtime: `{port}` and
//! `{replica}` substituted in the command, `PORT` and `ACS_REPLICA` set in the environment (they
//! win over `spec.env`); which environment variables a replica may not get
//! ([`check_env_name`]); and the spec without its secret values ([`without_secret_values`]), for
//! anything that is written down.

use std::collections::BTreeMap;

use acs_events::{ReplicaId, ReplicaSpec};

/// Prefixes of variables that change how programs are loaded: the dynamic linker (glibc `LD_*`,
/// macOS `DYLD_*`) and bash's exported functions.
const REFUSED_PREFIXES: &[&str] = &["LD_", "DYLD_", "BASH_FUNC_"];

/// Variables that change how programs load or run: glibc's "unsecure" list (ignored by glibc for
/// set-uid programs for this reason), shell start-up files and options, and the start-up hooks
/// and module paths of common interpreters.
const REFUSED_NAMES: &[&str] = &[
    // glibc (elf/dl-support, sysdeps/generic/unsecvars.h)
    "GCONV_PATH",
    "GETCONF_DIR",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "LOCPATH",
    "MALLOC_TRACE",
    "MALLOC_CHECK_",
    "NIS_PATH",
    "NLSPATH",
    "RESOLV_HOST_CONF",
    "RES_OPTIONS",
    "TMPDIR",
    "TZDIR",
    // shells
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "IFS",
    "PROMPT_COMMAND",
    // interpreters and runtimes
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONINSPECT",
    "PERL5LIB",
    "PERLLIB",
    "PERL5OPT",
    "PERL5DB",
    "RUBYOPT",
    "RUBYLIB",
    "NODE_OPTIONS",
    "NODE_PATH",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "LUA_INIT",
    "LUA_PATH",
    "LUA_CPATH",
];

/// `Err` with the reason when a replica may not get the environment variable `name`: a name
/// that is empty or holds `=` / NUL, or one of the names above (compared ignoring case).
pub fn check_env_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return Err(format!("environment variable name {name:?} is not valid"));
    }
    let upper = name.to_ascii_uppercase();
    let refused = REFUSED_PREFIXES.iter().any(|p| upper.starts_with(p))
        || REFUSED_NAMES.contains(&upper.as_str())
        || upper.starts_with("LUA_INIT_");
    if refused {
        return Err(format!(
            "environment variable {name} is refused: it changes how programs load or run"
        ));
    }
    Ok(())
}

/// The first variable of `spec.env` or `spec.secrets` that [`check_env_name`] refuses.
pub fn check_env(spec: &ReplicaSpec) -> Result<(), String> {
    spec.env
        .keys()
        .chain(spec.secrets.keys())
        .try_for_each(|k| check_env_name(k))
}

/// `spec` without the values of its secrets (the variables `spec.secrets` names are dropped
/// from `spec.env`), for state files and anything else that is written down.
pub fn without_secret_values(spec: &ReplicaSpec) -> ReplicaSpec {
    let mut out = spec.clone();
    out.env.retain(|k, _| !spec.secrets.contains_key(k));
    out
}

/// Replaces `{port}` and `{replica}` in every argument.
pub fn substitute(command: &[String], port: u16, replica: &ReplicaId) -> Vec<String> {
    let port = port.to_string();
    command
        .iter()
        .map(|a| {
            a.replace("{port}", &port)
                .replace("{replica}", replica.as_str())
        })
        .collect()
}

/// The replica's environment: `env` (the spec's, in key order) without `PORT` and
/// `ACS_REPLICA`, then `PORT=<port>` and `ACS_REPLICA=<replica>`.
pub fn replica_env(
    env: &BTreeMap<String, String>,
    port: u16,
    replica: &ReplicaId,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k.as_str() != "PORT" && k.as_str() != "ACS_REPLICA")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.push(("PORT".into(), port.to_string()));
    out.push(("ACS_REPLICA".into(), replica.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_placeholders() {
        let r1 = ReplicaId::new("r1").unwrap();
        let cmd = vec![
            "srv".into(),
            "--port={port}".into(),
            "{replica}-{port}".into(),
        ];
        assert_eq!(
            substitute(&cmd, 8080, &r1),
            ["srv", "--port=8080", "r1-8080"]
        );
    }

    #[test]
    fn loader_and_interpreter_variables_are_refused() {
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "ld_preload",
            "DYLD_INSERT_LIBRARIES",
            "GCONV_PATH",
            "GLIBC_TUNABLES",
            "TMPDIR",
            "TZDIR",
            "RES_OPTIONS",
            "BASH_ENV",
            "ENV",
            "BASH_FUNC_ls%%",
            "PYTHONPATH",
            "NODE_OPTIONS",
            "LUA_INIT_5_4",
            "",
            "A=B",
            "A\0",
        ] {
            assert!(check_env_name(name).is_err(), "{name:?} must be refused");
        }
        let err = check_env_name("LD_PRELOAD").unwrap_err();
        assert_eq!(
            err,
            "environment variable LD_PRELOAD is refused: it changes how programs load or run"
        );
        for name in [
            "RUST_LOG",
            "WORK_MS",
            "PATH",
            "HOME",
            "TZ",
            "LANG",
            "LDAP_URI",
            "ENVIRONMENT",
        ] {
            assert!(check_env_name(name).is_ok(), "{name:?} is fine");
        }
    }

    #[test]
    fn check_env_covers_env_and_secrets_and_redaction_drops_secret_values() {
        let spec = |v: serde_json::Value| -> ReplicaSpec { serde_json::from_value(v).unwrap() };
        let ok = spec(serde_json::json!({"service": "web", "command": ["x"], "env": {"A": "1"}}));
        assert_eq!(check_env(&ok), Ok(()));
        let env = spec(
            serde_json::json!({"service": "web", "command": ["x"], "env": {"LD_PRELOAD": "/x.so"}}),
        );
        assert!(check_env(&env).unwrap_err().contains("LD_PRELOAD"));
        let sec = spec(
            serde_json::json!({"service": "web", "command": ["x"], "secrets": {"LD_AUDIT": "s"}}),
        );
        assert!(check_env(&sec).unwrap_err().contains("LD_AUDIT"));

        let mut resolved = spec(serde_json::json!({
            "service": "web", "command": ["x"], "env": {"A": "1"}, "secrets": {"DB": "db"}
        }));
        resolved.env.insert("DB".into(), "hunter2".into());
        let written = without_secret_values(&resolved);
        assert_eq!(
            written.env,
            BTreeMap::from([("A".to_string(), "1".to_string())])
        );
        assert_eq!(written.secrets, resolved.secrets);
    }

    #[test]
    fn port_and_replica_win_over_the_spec_env() {
        let env = BTreeMap::from([
            ("PORT".to_string(), "1".to_string()),
            ("B".to_string(), "2".to_string()),
            ("A".to_string(), "1".to_string()),
            ("ACS_REPLICA".to_string(), "other".to_string()),
        ]);
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            replica_env(&env, 8080, &ReplicaId::new("r1").unwrap()),
            [
                pair("A", "1"),
                pair("B", "2"),
                pair("PORT", "8080"),
                pair("ACS_REPLICA", "r1")
            ]
        );
    }
}
