use super::*;

const GOOD: &str = r#"
    [[service]]
    name = "web"
    command = ["demo-web", "--port", "{port}"]
    route = { path_prefix = "/" }
    policy = { min_replicas = 1, max_replicas = 4, target_rps_per_replica = 20 }

    [[service]]
    name = "api"
    image = "acs/api:latest"
    port = 9000
    route = { host = "api.local" }
    selection = "least_conn"
"#;

#[test]
fn parses_a_good_file() {
    let s = Services::parse(GOOD).unwrap();
    assert_eq!(s.names(), vec!["api", "web"]);
    let web = s.get(&"web".parse().unwrap()).unwrap();
    assert_eq!(web.policy.max_replicas, 4);
    assert_eq!(web.policy.scale_down_window_s, 30.0);
    assert_eq!(web.health_path, "/healthz");
    let api = s.get(&"api".parse().unwrap()).unwrap();
    assert_eq!(api.selection, Selection::LeastConn);
}

fn err(text: &str) -> String {
    Services::parse(text).unwrap_err().to_string()
}

#[test]
fn secrets_travel_by_name_and_bad_names_are_refused() {
    let text = "[[service]]\nname = \"web\"\ncommand = [\"x\"]\nsecrets = { DB_PASSWORD = \"db-password\" }\n";
    let s = Services::parse(text).unwrap();
    let spec = s.get(&"web".parse().unwrap()).unwrap().replica_spec();
    assert_eq!(
        spec.secrets.get("DB_PASSWORD").map(String::as_str),
        Some("db-password")
    );
    let e = err(
        "[[service]]\nname = \"web\"\ncommand = [\"x\"]\nsecrets = { DB = \"../etc/shadow\" }\n",
    );
    assert!(
        e.contains("service \"web\"") && e.contains("../etc/shadow"),
        "{e}"
    );
}

#[test]
fn unknown_field_is_named() {
    let e = err("[[service]]\nname = \"web\"\ncommand = [\"x\"]\nreplicas = 3\n");
    assert!(e.contains("replicas"), "{e}");
}

#[test]
fn policy_errors_name_the_field() {
    let e = err(
        "[[service]]\nname=\"web\"\ncommand=[\"x\"]\npolicy={min_replicas=5, max_replicas=2}\n",
    );
    assert!(
        e.contains("service \"web\"") && e.contains("policy.min_replicas"),
        "{e}"
    );
    let e = err("[[service]]\nname=\"web\"\ncommand=[\"x\"]\npolicy={target_cpu_pct=-1.0}\n");
    assert!(e.contains("policy.target_cpu_pct"), "{e}");
}

#[test]
fn every_signal_key_is_a_policy_field() {
    for signal in crate::policy::SIGNALS {
        let file = format!(
            "[[service]]\nname=\"web\"\ncommand=[\"x\"]\npolicy={{{}=7}}\n",
            signal.key
        );
        let services = Services::parse(&file).unwrap_or_else(|e| panic!("{}: {e}", signal.key));
        let policy = &services.get(&"web".parse().unwrap()).unwrap().policy;
        assert_eq!((signal.target)(policy), Some(7.0), "{}", signal.key);
        let zero = file.replace("=7}", "=0}");
        assert!(
            err(&zero).contains(&format!("policy.{} must be > 0", signal.key)),
            "{}",
            signal.key
        );
    }
    assert!(crate::policy::describe_targets(&Policy::default()).starts_with("no target"));
}

#[test]
fn bad_name_and_missing_command() {
    let e = err("[[service]]\nname=\"w.b\"\ncommand=[\"x\"]\n");
    assert!(e.contains("service name"), "{e}");
    let e = err("[[service]]\nname=\"web\"\n");
    assert!(e.contains("command"), "{e}");
    let e = err("");
    assert!(e.contains("no [[service]]"), "{e}");
}

#[test]
fn duplicate_routes_and_names() {
    let e =
        err("[[service]]\nname=\"a\"\ncommand=[\"x\"]\n[[service]]\nname=\"b\"\ncommand=[\"x\"]\n");
    assert!(e.contains("already used"), "{e}");
    let e = err(
        "[[service]]\nname=\"a\"\ncommand=[\"x\"]\n[[service]]\nname=\"a\"\ncommand=[\"x\"]\nroute={host=\"h\"}\n",
    );
    assert!(e.contains("declared twice"), "{e}");
}
