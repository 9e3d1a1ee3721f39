//! The integer flags in milliseconds or seconds (`--lease-ms 1500`, `ACS_LEASE_MS=1500`) that
//! duration flags replaced (`--lease 1.5s`). Each binary lists its old forms in a [`Legacy`]
//! table; [`parse`] rewrites them into the new flags before clap sees the command line, so the
//! flag structs hold only the new flags and both forms give the same `Duration`. Every old form
//! used gives one deprecation warning, logged by [`warn`] once tracing is up.

use std::ffi::OsString;

/// One replaced flag: `--{old} N` (and `{old_env}=N`) means `--{new} N{unit}`.
#[derive(Debug, Clone, Copy)]
pub struct Legacy {
    pub old: &'static str,
    pub new: &'static str,
    pub old_env: &'static str,
    pub new_env: &'static str,
    /// `ms` or `s`.
    pub unit: &'static str,
}

impl Legacy {
    /// An old flag in milliseconds.
    pub const fn ms(old: &'static str, new: &'static str, env: [&'static str; 2]) -> Self {
        Self {
            old,
            new,
            old_env: env[0],
            new_env: env[1],
            unit: "ms",
        }
    }

    /// An old flag in whole seconds.
    pub const fn secs(old: &'static str, new: &'static str, env: [&'static str; 2]) -> Self {
        Self {
            old,
            new,
            old_env: env[0],
            new_env: env[1],
            unit: "s",
        }
    }

    fn value(&self, what: &str, v: &str) -> Result<String, String> {
        let unit = if self.unit == "ms" {
            "milliseconds"
        } else {
            "seconds"
        };
        v.trim()
            .parse::<u64>()
            .map(|n| format!("{n}{}", self.unit))
            .map_err(|_| format!("{what}: {v:?} is not a whole number of {unit}"))
    }
}

/// The command line with every old form in `table` turned into its new flag, and a warning per
/// old form used. `env` reads the environment (`|k| std::env::var(k).ok()`); an old variable
/// counts only when neither its new variable nor either flag is given.
pub fn rewrite(
    args: impl IntoIterator<Item = OsString>,
    table: &[Legacy],
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Vec<OsString>, Vec<String>), String> {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(s) = arg.to_str().filter(|s| s.starts_with("--")) else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            out.push(arg);
            out.extend(args.by_ref());
            break;
        }
        let (name, inline) = match s[2..].split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (&s[2..], None),
        };
        let Some(l) = table.iter().find(|l| l.old == name) else {
            out.push(arg);
            continue;
        };
        let flag = format!("--{}", l.old);
        let v = match inline {
            Some(v) => v,
            None => args
                .next()
                .and_then(|v| v.into_string().ok())
                .ok_or_else(|| format!("{flag}: a value is required"))?,
        };
        let v = l.value(&flag, &v)?;
        warnings.push(format!("{flag} is deprecated: use --{} {v}", l.new));
        out.push(format!("--{}={v}", l.new).into());
    }
    for l in table {
        let given = |name: &str| {
            out.iter().filter_map(|a| a.to_str()).any(|a| {
                a.strip_prefix("--")
                    .is_some_and(|a| a == name || a.starts_with(&format!("{name}=")))
            })
        };
        let Some(v) = env(l.old_env) else { continue };
        if env(l.new_env).is_some() || given(l.new) {
            warnings.push(format!(
                "{} is ignored: {} or --{} is given",
                l.old_env, l.new_env, l.new
            ));
            continue;
        }
        let v = l.value(l.old_env, &v)?;
        warnings.push(format!(
            "{} is deprecated: use {}={v}",
            l.old_env, l.new_env
        ));
        out.push(format!("--{}={v}", l.new).into());
    }
    Ok((out, warnings))
}

/// Parses this process's command line into `P` after [`rewrite`]; a bad old value is reported
/// like clap's own errors (exit 2).
pub fn parse<P: clap::Parser>(table: &[Legacy]) -> (P, Vec<String>) {
    match rewrite(std::env::args_os(), table, |k| std::env::var(k).ok()) {
        Ok((argv, warnings)) => (P::parse_from(argv), warnings),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

/// [`rewrite`] and `P::try_parse_from` over `bin` and `args`, without the environment: for
/// tests of a binary's flags.
pub fn try_parse<P: clap::Parser>(table: &[Legacy], bin: &str, args: &[&str]) -> Result<P, String> {
    let argv = std::iter::once(bin)
        .chain(args.iter().copied())
        .map(OsString::from);
    let (argv, _) = rewrite(argv, table, |_| None)?;
    P::try_parse_from(argv).map_err(|e| e.to_string())
}

/// Logs the deprecation warnings [`parse`] collected (call it once tracing is set up).
pub fn warn(warnings: &[String]) {
    for w in warnings {
        tracing::warn!("{w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[Legacy] = &[
        Legacy::ms("lease-ms", "lease", ["ACS_LEASE_MS", "ACS_LEASE"]),
        Legacy::secs("keep-s", "keep", ["ACS_KEEP_S", "ACS_KEEP"]),
    ];

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<(Vec<String>, Vec<String>), String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let (argv, warnings) = rewrite(args.iter().map(OsString::from), TABLE, lookup)?;
        let argv = argv.into_iter().map(|a| a.into_string().unwrap()).collect();
        Ok((argv, warnings))
    }

    #[test]
    fn old_flags_become_new_ones_with_a_warning() {
        let (argv, w) = run(
            &["x", "--lease-ms", "1500", "--keep-s=30", "--other", "1"],
            &[],
        )
        .unwrap();
        assert_eq!(argv, ["x", "--lease=1500ms", "--keep=30s", "--other", "1"]);
        assert_eq!(w.len(), 2);
        assert!(
            w[0].contains("--lease-ms is deprecated: use --lease 1500ms"),
            "{w:?}"
        );
        let (argv, w) = run(&["x", "--lease", "2s"], &[]).unwrap();
        assert_eq!(argv, ["x", "--lease", "2s"]);
        assert!(w.is_empty());
        // After `--` nothing is a flag.
        let (argv, _) = run(&["x", "--", "--lease-ms", "5"], &[]).unwrap();
        assert_eq!(argv, ["x", "--", "--lease-ms", "5"]);
    }

    #[test]
    fn old_variables_count_only_when_nothing_newer_is_given() {
        let (argv, w) = run(&["x"], &[("ACS_LEASE_MS", "900")]).unwrap();
        assert_eq!(argv, ["x", "--lease=900ms"]);
        assert!(
            w[0].contains("ACS_LEASE_MS is deprecated: use ACS_LEASE=900ms"),
            "{w:?}"
        );
        let (argv, w) = run(&["x"], &[("ACS_LEASE_MS", "900"), ("ACS_LEASE", "1s")]).unwrap();
        assert_eq!(argv, ["x"]);
        assert!(w[0].contains("ACS_LEASE_MS is ignored"), "{w:?}");
        let (argv, _) = run(&["x", "--lease=1s"], &[("ACS_LEASE_MS", "900")]).unwrap();
        assert_eq!(argv, ["x", "--lease=1s"]);
    }

    #[test]
    fn bad_old_values_name_the_flag() {
        let e = run(&["x", "--lease-ms", "1.5s"], &[]).unwrap_err();
        assert!(
            e.contains("--lease-ms") && e.contains("milliseconds"),
            "{e}"
        );
        let e = run(&["x", "--keep-s"], &[]).unwrap_err();
        assert!(e.contains("--keep-s: a value is required"), "{e}");
        let e = run(&["x"], &[("ACS_KEEP_S", "soon")]).unwrap_err();
        assert!(e.contains("ACS_KEEP_S") && e.contains("seconds"), "{e}");
    }
}
