//! Last step: services the proxies still route but the services file no longer declares (a
//! brain restarted with a new file) are withdrawn from every proxy, explicitly: a `withdraw`
//! update, on which a proxy drops the service's route and backends, so no request reaches a
//! port that another service may have taken since. A proxy that still reports the service
//! has not applied it yet; it is sent again, at most once per `reset_every_ms`.

use std::collections::BTreeMap;

use acs_events::{BackendChange, BackendUpdate, Selection, ServiceName, SCHEMA_VERSION};

use crate::config::Services;
use crate::world::Published;
use crate::world::{Now, World};

/// One withdrawal: the update to publish, and what the world records of it.
#[derive(Debug, PartialEq)]
pub(super) struct Withdrawal {
    pub update: BackendUpdate,
    pub published: Published,
}

pub(super) fn withdrawals(world: &World, services: &Services, now: Now) -> Vec<Withdrawal> {
    // Undeclared services some live proxy still routes to, with the highest version reported.
    let mut routed: BTreeMap<&ServiceName, u64> = BTreeMap::new();
    for proxy in world.live_proxies(now.mono) {
        for t in proxy
            .last
            .services
            .iter()
            .filter(|t| services.get(&t.service).is_none())
        {
            let v = routed.entry(&t.service).or_default();
            *v = (*v).max(t.version);
        }
    }
    let every = world.settings().reset_every_ms;
    let mut out = Vec::new();
    for (service, reported_version) in routed {
        let state = world.service(service);
        if state
            .and_then(|s| s.routing.last_reset)
            .is_some_and(|at| now.mono.saturating_sub(at) < every)
        {
            continue;
        }
        let version = state
            .map_or(0, |s| s.routing.version)
            .max(world.first_version())
            .max(reported_version)
            + 1;
        let change = BackendChange::Withdraw;
        let update = BackendUpdate {
            v: SCHEMA_VERSION,
            service: service.clone(),
            version,
            ts_ms: now.unix_ms,
            selection: Selection::default(),
            change,
        };
        let published = Published {
            service: service.clone(),
            version,
            backends: BTreeMap::new(),
            reset: true,
        };
        out.push(Withdrawal { update, published });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{id, now};
    use super::*;
    use crate::world::{Event, Settings};
    use acs_events::{BackendTraffic, ProxyMetrics, ServiceTraffic, Traffic};

    fn report(service: &str, version: u64, backends: &[&str]) -> ServiceTraffic {
        let backends = backends.iter().map(|b| BackendTraffic {
            id: id(b),
            traffic: Traffic::default(),
            draining: false,
            ejected: false,
        });
        ServiceTraffic {
            service: id(service),
            version,
            totals: Traffic::default(),
            backends: backends.collect(),
        }
    }

    fn proxy(name: &str, services: Vec<ServiceTraffic>) -> Event {
        Event::Proxy(ProxyMetrics {
            v: 1,
            proxy: id(name),
            ts_ms: 0,
            interval_ms: 1000,
            services,
            unrouted: 0,
            rejected: 0,
        })
    }

    #[test]
    fn an_undeclared_routed_service_is_withdrawn_once_per_reset_period() {
        let services = Services::parse("[[service]]\nname = \"web\"\ncommand = [\"x\"]\n").unwrap();
        let mut world = World::new(Settings::default(), now(0));
        world.apply(
            proxy(
                "p1",
                vec![report("web", 5, &["web-a"]), report("old", 40, &["old-a"])],
            ),
            0,
        );
        world.apply(
            proxy(
                "p2",
                vec![report("old", 42, &["old-a"]), report("gone", 9, &[])],
            ),
            0,
        );
        let out = withdrawals(&world, &services, now(100));
        let names: Vec<&str> = out.iter().map(|w| w.update.service.as_str()).collect();
        assert_eq!(
            names,
            ["gone", "old"],
            "web is declared; a route with no backends goes too"
        );
        let u = out[1].update.clone();
        assert_eq!(
            (u.service.as_str(), u.version),
            ("old", world.first_version().max(42) + 1)
        );
        assert_eq!(u.change, BackendChange::Withdraw);

        let sent = crate::world::Bookkeeping {
            published: out.into_iter().map(|w| w.published).collect(),
            ..Default::default()
        };
        world.apply(Event::PlanSent(sent), 100);
        assert!(
            withdrawals(&world, &services, now(1_000)).is_empty(),
            "not again before reset_every_ms"
        );
        world.apply(proxy("p2", vec![report("old", 42, &["old-a"])]), 5_000);
        let again = withdrawals(&world, &services, now(5_100));
        assert_eq!(
            again.len(),
            1,
            "a proxy still routes old (p1's report of it has not changed either)"
        );
        assert!(again[0].update.version > u.version, "versions keep growing");
    }
}
