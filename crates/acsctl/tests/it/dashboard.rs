//! The monitor's web dashboard in real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver by fantoccini) against a real local cluster
//! (nats-server, acs-monitor, vim-brain, two workers, the proxy, demo-web replicas).
//!
//! It logs in with the monitor's token, sees live data move (the overview CPU chart gains
//! points, the "last update" time advances), is refused a POST without the session's CSRF
//! header, pins `web` at 3 from the Services page and then sees 3 replicas answer `/whoami`
//! through the proxy. It then clicks Replace on a replica (a new one takes its place), Cordon and
//! Uncordon on a worker, reloads and finds the decisions kept in the history, checks that the
//! pages do not scroll sideways at phone width (390 px), and pins `web` at 0 so an alarm fires
//! and is acked from the Alarms page. Every page is saved as a PNG in
//! `target/dashboard-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use acs_cluster::{ClusterOptions, LocalCluster};
use acs_testkit::{free_port, wait_for_port, TempDir};
use acsctl::load::{self, LoadOptions};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const SERVICES: &str = r#"
[[service]]
name = "web"
command = ["demo-web", "--port", "{port}", "--id", "{replica}", "--bind", "127.0.0.1", "--work-ms", "1"]
route = { path_prefix = "/" }
policy = { min_replicas = 1, max_replicas = 2 }
"#;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `name` on PATH or in /usr/bin; panics naming the package (the test must run in CI).
fn tool(name: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or(None)
        .or_else(|| Some(Path::new("/usr/bin").join(name)).filter(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!("{name} not found: apt-get install {package} (scripts/install-deps.sh does)")
    })
}

fn screenshots_dir() -> PathBuf {
    let dir = acs_testkit::bin_dir()
        .parent()
        .expect("target dir")
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).unwrap();
}

/// Shows page `name` (hash navigation) and lets the charts draw.
async fn show(c: &Client, name: &str) {
    c.execute("location.hash = arguments[0];", vec![json!(name)])
        .await
        .unwrap();
    let visible = format!("!document.getElementById('page-{name}').hidden");
    wait_js(c, &visible, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

/// Polls `expr` (a JS expression) until it is true.
async fn wait_js(c: &Client, expr: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let v = c
            .execute(&format!("return !!({expr});"), vec![])
            .await
            .unwrap();
        if v == json!(true) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {expr}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Clicks a dashboard button and waits for its flash message to say it worked.
async fn click_and_flash(c: &Client, css: &str, what: &str) {
    c.execute(
        "delete document.getElementById('flash').dataset.ok;",
        vec![],
    )
    .await
    .unwrap();
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{what}: no {css}: {e}"))
        .click()
        .await
        .unwrap();
    wait_js(
        c,
        "document.getElementById('flash').dataset.ok !== undefined",
        Duration::from_secs(10),
    )
    .await;
    let ok = c
        .execute(
            "return document.getElementById('flash').dataset.ok;",
            vec![],
        )
        .await
        .unwrap();
    let flash = c
        .find(Locator::Css("#flash"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(ok, json!("true"), "{what} failed: {flash}");
}

async fn js_number(c: &Client, expr: &str) -> f64 {
    c.execute(&format!("return Number({expr});"), vec![])
        .await
        .unwrap()
        .as_f64()
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_logs_in_shows_live_data_and_pins_web_at_three() {
    for bin in [
        "vim-brain",
        "vmm-worker",
        "acs-proxy",
        "demo-web",
        "acs-monitor",
    ] {
        acs_testkit::workspace_bin(bin);
    }
    let chromium = tool("chromium", "chromium");
    let chromedriver = tool("chromedriver", "chromium-driver");

    let tmp = TempDir::new("dashboard");
    let services = tmp.path().join("services.toml");
    std::fs::write(&services, SERVICES).unwrap();
    let mut o = ClusterOptions::with_free_ports(tmp.path().join("acs"));
    o.services = services;
    o.workers = 2;
    o.max_replicas = 3;
    o.ready_timeout = Duration::from_secs(90);
    let cluster = LocalCluster::start(o)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    cluster
        .wait_for_status(Duration::from_secs(60), |s| {
            s.services
                .iter()
                .any(|x| x.name.as_str() == "web" && x.running >= 1)
        })
        .await
        .unwrap_or_else(|e| panic!("web never ran: {e}"));
    let base = format!("http://{}", cluster.options().monitor_http);
    let token = std::fs::read_to_string(cluster.monitor_token_file())
        .unwrap()
        .trim()
        .to_string();

    let port = free_port();
    let driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(20))
        .expect("chromedriver listens");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800"],
        }),
    );
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session in chromium");
    c.set_window_size(1280, 800).await.unwrap();

    // No session: the login page. A wrong token is refused with a message.
    c.goto(&base).await.unwrap();
    c.wait()
        .for_element(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys("wrong-token-0123456789")
        .await
        .unwrap();
    c.find(Locator::Css("#login-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let err = c
        .wait()
        .for_element(Locator::Css("#login-error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(err.contains("Wrong token"), "{err}");
    screenshot(&c, "login").await;
    c.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(&token)
        .await
        .unwrap();
    c.find(Locator::Css("#login-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#nav"))
        .await
        .expect("logged in: the dashboard");

    // Live data moves: status and worker metrics arrive over SSE, the chart gains points.
    wait_js(
        &c,
        "Number(document.getElementById('last-update').dataset.ts) > 0",
        Duration::from_secs(20),
    )
    .await;
    wait_js(
        &c,
        "Number(document.getElementById('ov-cpu-box').dataset.points || 0) > 0",
        Duration::from_secs(20),
    )
    .await;
    let (points, ts) = (
        js_number(&c, "document.getElementById('ov-cpu-box').dataset.points").await,
        js_number(&c, "document.getElementById('last-update').dataset.ts").await,
    );
    wait_js(
        &c,
        &format!("Number(document.getElementById('ov-cpu-box').dataset.points) > {points}"),
        Duration::from_secs(20),
    )
    .await;
    wait_js(
        &c,
        &format!("Number(document.getElementById('last-update').dataset.ts) > {ts}"),
        Duration::from_secs(20),
    )
    .await;
    wait_js(
        &c,
        "document.querySelectorAll('#ov-workers tbody tr[data-key^=\"w\"]').length === 2",
        Duration::from_secs(20),
    )
    .await;
    screenshot(&c, "overview").await;

    // The session cookie alone does not steer: a POST without the CSRF header is refused.
    let refused = c
        .execute_async(
            "const done = arguments[0]; fetch('/api/v1/services/web/scale', {method: 'POST', body: '{\"replicas\":0}'}).then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(refused, json!(403));

    show(&c, "hosts").await;
    wait_js(
        &c,
        "document.querySelectorAll('#hosts-table tbody tr[data-key^=\"w\"]').length === 2",
        Duration::from_secs(10),
    )
    .await;
    wait_js(
        &c,
        "Number(document.getElementById('hosts-hourly-box').dataset.points || 0) > 0",
        Duration::from_secs(15),
    )
    .await;
    screenshot(&c, "hosts").await;

    // Pin web at 3 from the Services page.
    show(&c, "services").await;
    let input = c
        .wait()
        .for_element(Locator::Css("input[data-pin=\"web\"]"))
        .await
        .unwrap();
    input.clear().await.unwrap();
    input.send_keys("3").await.unwrap();
    c.find(Locator::Css("button[data-pin-btn=\"web\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        "document.getElementById('flash').dataset.ok !== undefined",
        Duration::from_secs(10),
    )
    .await;
    let flash = c
        .find(Locator::Css("#flash"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ok = c
        .execute(
            "return document.getElementById('flash').dataset.ok;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(ok, json!("true"), "the pin failed: {flash}");
    assert!(flash.contains("web: pin at 3"), "{flash}");

    let status = cluster
        .wait_for_status(Duration::from_secs(60), |s| {
            s.services
                .iter()
                .any(|x| x.name.as_str() == "web" && x.desired == 3 && x.running == 3)
        })
        .await
        .unwrap_or_else(|e| panic!("web never ran 3: {e}"));
    let web = status
        .services
        .iter()
        .find(|x| x.name.as_str() == "web")
        .unwrap();
    assert_eq!(web.mode, acs_events::ScaleMode::Manual);

    // Three replicas serve through the proxy.
    let url = format!("{}/whoami", cluster.proxy_url());
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let r = load::run(
            &LoadOptions::new(url.clone(), 40.0, Duration::from_secs(2)),
            std::future::pending(),
            |_| {},
        )
        .await
        .unwrap();
        if r.counts.instances.len() == 3 || Instant::now() > deadline {
            break r;
        }
    };
    assert_eq!(report.counts.instances.len(), 3, "{report}");

    wait_js(&c, "[...document.querySelectorAll('#services-table tbody td')].some(td => td.textContent === 'manual')", Duration::from_secs(10)).await;
    screenshot(&c, "services").await;
    show(&c, "replicas").await;
    wait_js(
        &c,
        "document.querySelectorAll('#replicas-table button[data-replace]').length === 3",
        Duration::from_secs(10),
    )
    .await;
    screenshot(&c, "replicas").await;

    // Replace one replica from its button: a new one takes its place, the old one goes.
    let victim = c
        .execute("return document.querySelector('#replicas-table button[data-replace]').dataset.replace;", vec![])
        .await
        .unwrap();
    let victim = victim.as_str().unwrap().to_string();
    click_and_flash(&c, &format!("button[data-replace=\"{victim}\"]"), "replace").await;
    cluster
        .wait_for_status(Duration::from_secs(60), |s| {
            s.services.iter().any(|x| {
                x.name.as_str() == "web"
                    && x.running == 3
                    && x.replicas.iter().all(|r| r.id.as_str() != victim)
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{victim} was never replaced: {e}"));

    // Cordon w1 from its button, then uncordon it.
    click_and_flash(
        &c,
        "button[data-maint=\"w1\"][data-action=\"cordon\"]",
        "cordon",
    )
    .await;
    cluster
        .wait_for_status(Duration::from_secs(20), |s| {
            s.workers
                .iter()
                .any(|w| w.id.as_str() == "w1" && w.cordoned)
        })
        .await
        .unwrap_or_else(|e| panic!("w1 was never cordoned: {e}"));
    wait_js(&c, "[...document.querySelectorAll('#maint-table tbody tr[data-key=\"w1\"] td')].some(td => td.textContent === 'cordoned')", Duration::from_secs(10)).await;
    screenshot(&c, "replicas-cordoned").await;
    click_and_flash(
        &c,
        "button[data-maint=\"w1\"][data-action=\"uncordon\"]",
        "uncordon",
    )
    .await;
    cluster
        .wait_for_status(Duration::from_secs(20), |s| {
            s.workers
                .iter()
                .any(|w| w.id.as_str() == "w1" && !w.cordoned)
        })
        .await
        .unwrap_or_else(|e| panic!("w1 was never uncordoned: {e}"));

    // Decisions are kept: after a reload the feed starts with the history, before anything new.
    c.refresh().await.unwrap();
    c.wait().for_element(Locator::Css("#nav")).await.unwrap();
    show(&c, "decisions").await;
    wait_js(
        &c,
        "/^[1-9][0-9]* decisions/.test(document.getElementById('history-note').textContent)",
        Duration::from_secs(10),
    )
    .await;
    wait_js(
        &c,
        "document.querySelectorAll('#decisions-feed li[data-service=\"web\"]').length > 0",
        Duration::from_secs(10),
    )
    .await;
    screenshot(&c, "decisions").await;
    show(&c, "alarms").await;
    screenshot(&c, "alarms-quiet").await;

    // A phone-sized screen: no sideways scrolling of the page (wide tables scroll in their panel).
    c.set_window_size(390, 844).await.unwrap();
    for page in ["overview", "services", "replicas"] {
        show(&c, page).await;
        let fits = c
            .execute("return document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1;", vec![])
            .await
            .unwrap();
        assert_eq!(fits, json!(true), "{page} scrolls sideways at 390 px");
        screenshot(&c, &format!("phone-{page}")).await;
    }
    c.set_window_size(1280, 800).await.unwrap();

    // An alarm fires and is acked from the page: pin web at 0, so config/alarms.local.toml's
    // web_replicas_low (below 1 for 10 s) fires; Ack on the Alarms page records who acked.
    show(&c, "services").await;
    let input = c
        .wait()
        .for_element(Locator::Css("input[data-pin=\"web\"]"))
        .await
        .unwrap();
    input.clear().await.unwrap();
    input.send_keys("0").await.unwrap();
    click_and_flash(&c, "button[data-pin-btn=\"web\"]", "pin web at 0").await;
    show(&c, "alarms").await;
    let firing = "[...document.querySelectorAll('#alarms-table tbody tr')].some(tr => tr.dataset.key === 'web_replicas_low|web' && tr.textContent.includes('firing'))";
    wait_js(&c, firing, Duration::from_secs(60)).await;
    click_and_flash(&c, "button[data-ack=\"web_replicas_low\"]", "ack").await;
    wait_js(&c, "[...document.querySelectorAll('#alarms-table tbody tr')].some(tr => tr.dataset.key === 'web_replicas_low|web' && tr.textContent.includes('acked by dashboard'))", Duration::from_secs(10)).await;
    wait_js(
        &c,
        "document.querySelectorAll('#alarm-feed li').length > 0",
        Duration::from_secs(10),
    )
    .await;
    screenshot(&c, "alarms").await;

    // Logging out ends the session: the API refuses the cookie again.
    show(&c, "overview").await;
    c.find(Locator::Css("#logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#token"))
        .await
        .expect("back at the login page");
    let after = c
        .execute_async(
            "const done = arguments[0]; fetch('/api/v1/status').then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(after, json!(401));

    c.close().await.unwrap();
    drop(driver);
    drop(cluster);
}
