use super::*;
use crate::codec::decode;
use crate::msg::{BackendTraffic, Traffic};
use crate::{ReplicaId, ServiceName, CHUNK_BYTES, MAX_PAYLOAD};

fn traffic(i: u64) -> Traffic {
    Traffic {
        requests: i,
        rps: i as f64 / 2.0,
        in_flight: i % 5,
        p50_ms: 1.5,
        p99_ms: 12.25,
        errors: i % 3,
    }
}

fn service(name: &str, backends: usize) -> ServiceTraffic {
    ServiceTraffic {
        service: ServiceName::new(name).unwrap(),
        version: 1_763_870_358_000_002,
        totals: traffic(backends as u64),
        backends: (0..backends)
            .map(|i| BackendTraffic {
                id: ReplicaId::new(format!("{name}-t5x3k2-{i}")).unwrap(),
                traffic: traffic(i as u64),
                draining: i % 7 == 0,
                ejected: i % 11 == 0,
            })
            .collect(),
    }
}

fn report(proxy: &str, ts_ms: u64, services: Vec<ServiceTraffic>) -> ProxyMetrics {
    ProxyMetrics {
        v: 1,
        proxy: proxy.parse().unwrap(),
        ts_ms,
        interval_ms: 1000,
        services,
        unrouted: 4,
        rejected: 2,
    }
}

/// Splits, checks every part decodes under `CHUNK_BYTES`, and returns the decoded parts.
fn split_checked(m: &ProxyMetrics) -> Vec<ProxyMetricsMsg> {
    let parts = split_metrics(m.clone(), CHUNK_BYTES);
    for p in &parts {
        let bytes = encode(p);
        assert!(
            bytes.len() <= CHUNK_BYTES,
            "a part is {} bytes",
            bytes.len()
        );
        assert_eq!(&decode::<ProxyMetricsMsg>(&bytes).unwrap(), p);
    }
    parts
}

fn assemble(parts: Vec<ProxyMetricsMsg>) -> (Vec<ProxyMetrics>, MetricsAssembler) {
    let mut a = MetricsAssembler::default();
    let out = parts.into_iter().filter_map(|p| a.push(p, 10)).collect();
    (out, a)
}

#[test]
fn a_report_of_10000_backends_splits_under_the_limit_and_reassembles() {
    let services = (0..50).map(|i| service(&format!("svc{i}"), 200)).collect();
    let m = report("p1", 1_763_870_400_000, services);
    assert!(
        encode(&m).len() > 4 * MAX_PAYLOAD,
        "the test needs a big report ({} bytes)",
        encode(&m).len()
    );
    let parts = split_checked(&m);
    assert!(parts.len() > 5, "{} parts", parts.len());
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(
            p.part,
            Some(MetricsPart {
                seq: m.ts_ms,
                index: i as u32,
                count: parts.len() as u32
            })
        );
        assert_eq!(p.metrics.v, PARTS_VERSION);
    }
    let (out, a) = assemble(parts);
    assert_eq!(out, vec![m]);
    assert_eq!((a.pending(), a.dropped()), (0, PartsDropped::default()));
}

#[test]
fn one_service_of_10000_backends_is_continued_over_parts() {
    let m = report(
        "p1",
        7,
        vec![
            service("small", 3),
            service("web", 10_000),
            service("tail", 0),
        ],
    );
    let parts = split_checked(&m);
    let with_web = parts
        .iter()
        .filter(|p| {
            p.metrics
                .services
                .iter()
                .any(|s| s.service.as_str() == "web")
        })
        .count();
    assert!(with_web > 3, "web spans {with_web} parts");
    // Every part repeats web's version and totals.
    for p in &parts {
        for s in p
            .metrics
            .services
            .iter()
            .filter(|s| s.service.as_str() == "web")
        {
            assert_eq!(
                (s.version, s.totals),
                (m.services[1].version, m.services[1].totals)
            );
        }
    }
    assert_eq!(assemble(parts).0, vec![m]);
}

#[test]
fn parts_out_of_order_reassemble() {
    let m = report("p1", 7, vec![service("web", 10_000)]);
    let mut parts = split_checked(&m);
    parts.reverse();
    parts.swap(0, 1);
    assert_eq!(assemble(parts).0, vec![m]);
}

#[test]
fn a_report_that_fits_passes_straight_through() {
    let m = report("p1", 7, vec![service("web", 20)]);
    let parts = split_metrics(m.clone(), CHUNK_BYTES);
    assert_eq!(
        parts,
        vec![ProxyMetricsMsg {
            metrics: m.clone(),
            part: None
        }]
    );
    assert_eq!(
        encode(&parts[0]),
        encode(&m),
        "the wire form of a whole report is unchanged"
    );
    assert_eq!(
        MetricsAssembler::default().push(parts[0].clone(), 0),
        Some(m.clone())
    );
    assert_eq!(encode_metrics(m, CHUNK_BYTES), vec![encode(&parts[0])]);
}

#[test]
fn encoded_parts_are_the_split_parts() {
    let m = report("p1", 9, vec![service("web", 4_000), service("api", 10)]);
    let parts = split_checked(&m);
    assert!(parts.len() > 1);
    assert_eq!(
        encode_metrics(m, CHUNK_BYTES),
        parts.iter().map(encode).collect::<Vec<_>>()
    );
}

#[test]
fn a_missing_part_times_out() {
    let m = report("p1", 7, vec![service("web", 10_000)]);
    let mut parts = split_checked(&m);
    parts.remove(1);
    let mut a = MetricsAssembler::new(1_000);
    for p in parts {
        assert_eq!(a.push(p, 100), None);
    }
    assert_eq!(a.pending(), 1);
    // A whole report of another proxy, long after: the incomplete set is swept.
    let other = report("p2", 9, vec![]);
    assert_eq!(a.push(other.clone().into(), 1_200), Some(other));
    assert_eq!(
        (a.pending(), a.dropped().timed_out, a.dropped().total()),
        (0, 1, 1)
    );
}

#[test]
fn a_newer_report_replaces_an_older_incomplete_one() {
    let old = split_checked(&report("p1", 7, vec![service("web", 10_000)]));
    let new_report = report("p1", 8, vec![service("web", 9_000)]);
    let new = split_checked(&new_report);
    let mut a = MetricsAssembler::default();
    assert_eq!(a.push(old[0].clone(), 0), None);
    let mut out = Vec::new();
    for (i, p) in new.into_iter().enumerate() {
        out.extend(a.push(p, 1));
        if i == 0 {
            // A late part of the older report is stale now.
            assert_eq!(a.push(old[1].clone(), 1), None);
        }
    }
    assert_eq!(out, vec![new_report]);
    assert_eq!(
        a.dropped(),
        PartsDropped {
            superseded: 1,
            stale: 1,
            ..Default::default()
        }
    );
}

#[test]
fn a_repeated_index_abandons_the_set() {
    let parts = split_checked(&report("p1", 7, vec![service("web", 10_000)]));
    let mut a = MetricsAssembler::default();
    assert_eq!(a.push(parts[0].clone(), 0), None);
    assert_eq!(a.push(parts[0].clone(), 0), None);
    assert_eq!((a.pending(), a.dropped().inconsistent), (1, 1));
}

#[test]
fn memory_is_bounded_by_proxies_and_parts() {
    let parts = split_checked(&report("p0", 7, vec![service("web", 10_000)]));
    let mut a = MetricsAssembler::with_limits(10_000, 3, 1_000);
    for i in 0..10u64 {
        let mut p = parts[0].clone();
        p.metrics.proxy = format!("p{i}").parse().unwrap();
        assert_eq!(a.push(p, i), None);
    }
    assert_eq!((a.pending(), a.dropped().evicted), (3, 7));
    let mut a = MetricsAssembler::with_limits(10_000, 100, 4);
    for i in 0..10u64 {
        let mut p = parts[0].clone();
        p.metrics.proxy = format!("p{i}").parse().unwrap();
        a.push(p, i);
    }
    assert_eq!((a.pending(), a.dropped().evicted), (4, 6));
}

#[test]
fn malformed_parts_are_refused() {
    let m = report("p1", 7, vec![service("web", 2)]);
    for (index, count, why) in [
        (0, 0, "part.count"),
        (3, 3, "part.index 3"),
        (0, MAX_PARTS + 1, "part.count"),
    ] {
        let msg = ProxyMetricsMsg {
            metrics: m.clone(),
            part: Some(MetricsPart {
                seq: 7,
                index,
                count,
            }),
        };
        let e = decode::<ProxyMetricsMsg>(&encode(&msg)).unwrap_err();
        assert!(e.to_string().contains(why), "{e}");
        assert_eq!(
            MetricsAssembler::default().push(msg, 0),
            None,
            "never assembled without decode either"
        );
    }
    // A version newer than parts is refused; a part is refused by a reader of whole reports.
    let mut part = split_checked(&report("p1", 7, vec![service("web", 10_000)])).remove(0);
    assert_eq!(
        decode::<ProxyMetrics>(&encode(&part)).unwrap_err().kind(),
        "version"
    );
    part.metrics.v = PARTS_VERSION + 1;
    assert_eq!(
        decode::<ProxyMetricsMsg>(&encode(&part))
            .unwrap_err()
            .kind(),
        "version"
    );
}

#[test]
fn a_service_list_with_no_backends_splits_by_services() {
    let services = (0..5_000).map(|i| service(&format!("svc{i}"), 0)).collect();
    let m = report("p1", 7, services);
    let parts = split_checked(&m);
    assert!(parts.len() > 1);
    assert_eq!(assemble(parts).0, vec![m]);
}
