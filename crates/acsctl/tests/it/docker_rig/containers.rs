//! What the tests read from `docker inspect`.

use acs_testkit::docker::docker;

/// One container as `docker inspect` shows it.
#[derive(Debug, Clone)]
pub struct Ctr {
    pub id: String,
    pub name: String,
    pub replica: String,
    pub worker: String,
    pub service: String,
    pub nano_cpus: i64,
    pub memory: i64,
    pub running: bool,
    /// `acs.started_ms`: when the worker began creating it.
    pub created_ms: u64,
    /// `State.StartedAt`: when Docker started it.
    pub started_ms: Option<u64>,
}

/// `docker inspect` of `ids`: the fields the tests check.
pub fn inspect(ids: &[String]) -> Vec<Ctr> {
    const FORMAT: &str = concat!(
        "{{.Id}}|{{.Name}}|{{index .Config.Labels \"acs.replica\"}}|",
        "{{index .Config.Labels \"acs.worker\"}}|{{index .Config.Labels \"acs.service\"}}|",
        "{{.HostConfig.NanoCpus}}|{{.HostConfig.Memory}}|{{.State.Running}}|",
        "{{index .Config.Labels \"acs.started_ms\"}}|{{.State.StartedAt}}"
    );
    let parse = |line: &str| -> Option<Ctr> {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() != 10 {
            return None;
        }
        Some(Ctr {
            id: f[0].to_string(),
            name: f[1].trim_start_matches('/').to_string(),
            replica: f[2].to_string(),
            worker: f[3].to_string(),
            service: f[4].to_string(),
            nano_cpus: f[5].parse().ok()?,
            memory: f[6].parse().ok()?,
            running: f[7] == "true",
            created_ms: f[8].parse().unwrap_or(0),
            started_ms: rfc3339_ms(f[9]),
        })
    };
    // One call for all; a container removed meanwhile fails the batch: then one by one.
    let mut args = vec!["inspect", "-f", FORMAT];
    args.extend(ids.iter().map(String::as_str));
    if let Ok(out) = docker(&args) {
        return out.lines().filter_map(parse).collect();
    }
    ids.iter()
        .filter_map(|id| docker(&["inspect", "-f", FORMAT, id]).ok())
        .filter_map(|out| parse(out.trim()))
        .collect()
}

/// `2024-11-23T05:25:01.123456789Z` → Unix milliseconds (UTC only, as Docker writes it).
fn rfc3339_ms(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let ms: i64 = format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?;
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs * 1000 + ms).ok()
}

#[test]
fn docker_timestamps_parse() {
    assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
    // date -u -d 2024-11-23T05:25:01Z +%s = 1732339501
    assert_eq!(
        rfc3339_ms("2024-11-23T05:25:01.123456789Z"),
        Some(1_732_339_501_123)
    );
    assert_eq!(rfc3339_ms("0001-01-01T00:00:00Z"), None);
    assert_eq!(rfc3339_ms("garbage"), None);
}
