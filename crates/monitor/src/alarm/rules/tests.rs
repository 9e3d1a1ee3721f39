use super::*;

const GOOD: &str = r#"
[channels.hook]
type = "webhook"
url = "http://127.0.0.1:9000/alarms"

[channels.chat]
type = "slack"
url = "https://hooks.slack.com/services/T/B/X"

[channels.mail]
type = "email"
host = "127.0.0.1"
port = 2525
tls = "none"
from = "acs <acs@example.com>"
to = ["oncall@example.com"]

[[rule]]
name = "cpu_high"
metric = "cpu"
scope = "worker"
id = "*"
condition = "above"
warning = 80.0
critical = 95.0
for = "1m"
clear = 5.0
window = "30s"
repeat = "30m"
notify = ["hook", "chat"]
escalation = { after = "15m", to = "mail" }

[[rule]]
name = "web_rps_low"
metric = "rps"
scope = "service"
id = "web"
condition = "below"
warning = 1.0
notify = ["mail"]
"#;

fn err(text: &str) -> String {
    parse(text, Path::new(".")).unwrap_err().to_string()
}

#[test]
fn a_good_file_parses_with_defaults() {
    let r = parse(GOOD, Path::new(".")).unwrap();
    assert_eq!(r.rules.len(), 2);
    let cpu = r.rule("cpu_high").unwrap();
    assert_eq!(
        (cpu.target.clone(), cpu.for_ms, cpu.window_ms, cpu.repeat_ms),
        (Target::All, 60_000, 30_000, Some(1_800_000))
    );
    assert_eq!(
        cpu.escalation,
        Some(Escalation {
            after_ms: 900_000,
            to: "mail".into()
        })
    );
    let rps = r.rule("web_rps_low").unwrap();
    assert_eq!(
        (rps.for_ms, rps.clear, rps.aggregate, rps.critical),
        (0, 0.0, Aggregate::Avg, None)
    );
    assert_eq!(rps.target, Target::One("web".into()));
    let Some(Channel::Email(mail)) = r.channels.get("mail") else {
        panic!("mail channel")
    };
    assert_eq!(
        (mail.port, mail.tls, mail.to.len()),
        (2525, SmtpTls::None, 1)
    );
}

#[test]
fn the_example_file_parses() {
    let dir = std::env::temp_dir().join(format!("acs-alarm-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("smtp-password"), "secret\n").unwrap();
    let text = include_str!("../../../../../config/alarms.example.toml");
    let r = parse(text, &dir).unwrap();
    assert!(!r.rules.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_files_name_the_rule_and_the_field() {
    let e = err(&GOOD.replace("critical = 95.0", "critcal = 95.0"));
    assert!(e.contains("\"cpu_high\"") && e.contains("critcal"), "{e}");
    let e = err(&GOOD.replace("metric = \"cpu\"", "metric = \"rps\""));
    assert!(
        e.contains("\"cpu_high\"") && e.contains("`metric`") && e.contains("not a worker metric"),
        "{e}"
    );
    let e = err(&GOOD.replace("for = \"1m\"", "for = \"1x\""));
    assert!(e.contains("`for`") && e.contains("unit"), "{e}");
    let e = err(&GOOD.replace("for = \"1m\"", "for = 60"));
    assert!(e.contains("\"cpu_high\"") && e.contains("string"), "{e}");
    let e = err(&GOOD.replace("critical = 95.0", "critical = 50.0"));
    assert!(
        e.contains("`critical`") && e.contains("below the warning"),
        "{e}"
    );
    let e = err(&GOOD.replace("notify = [\"hook\", \"chat\"]", "notify = [\"pager\"]"));
    assert!(e.contains("`notify`") && e.contains("\"pager\""), "{e}");
    let e = err(&GOOD.replace("to = \"mail\"", "to = \"sms\""));
    assert!(e.contains("`escalation.to`"), "{e}");
    let e = err(&GOOD.replace("name = \"cpu_high\"", "name = \"cpu.high\""));
    assert!(e.contains("`name`") && e.contains("'.'"), "{e}");
    let e = err(&GOOD.replace("id = \"web\"", "id = \"\""));
    assert!(e.contains("\"web_rps_low\"") && e.contains("`id`"), "{e}");
    let e = err(&GOOD.replace("warning = 1.0\n", ""));
    assert!(
        e.contains("\"web_rps_low\"") && e.contains("`warning`"),
        "{e}"
    );
    let e = err(&GOOD.replace(
        "url = \"http://127.0.0.1:9000/alarms\"",
        "url = \"ftp://x\"",
    ));
    assert!(e.contains("channel \"hook\"") && e.contains("`url`"), "{e}");
    let e = err(&GOOD.replace("to = [\"oncall@example.com\"]", "to = [\"not an address\"]"));
    assert!(e.contains("channel \"mail\"") && e.contains("`to`"), "{e}");
    let e = err(&GOOD.replace("type = \"slack\"", "type = \"sms\""));
    assert!(e.contains("channel \"chat\""), "{e}");
    let e = err(&GOOD.replace("tls = \"none\"", "username = \"u\""));
    assert!(e.contains("`password_file`"), "{e}");
    let e = err(&format!("{GOOD}\n[[rule]]\nname = \"cpu_high\"\nmetric = \"cpu\"\nscope = \"worker\"\nid = \"w1\"\ncondition = \"above\"\nwarning = 1.0\nnotify = [\"hook\"]\n"));
    assert!(e.contains("two rules"), "{e}");
    assert!(err("colour = 1").contains("colour"));
    assert!(err("[[rule").contains("alarm rules"));
}

#[test]
fn durations() {
    assert_eq!(duration_ms("1500ms", false), Ok(1500));
    assert_eq!(duration_ms("0s", true), Ok(0));
    assert!(duration_ms("0s", false).is_err());
    assert!(duration_ms("10", false).unwrap_err().contains("no unit"));
    assert_eq!(duration_ms("1h 30m", false), Ok(5_400_000));
    assert!(duration_ms("5x", false)
        .unwrap_err()
        .contains("unknown unit"));
    assert!(duration_ms("soon", false).is_err());
    assert_eq!(human_ms(90_000), "1m30s");
    assert_eq!(human_ms(1500), "1500ms");
    assert_eq!(human_ms(3_600_000), "1h");
}
