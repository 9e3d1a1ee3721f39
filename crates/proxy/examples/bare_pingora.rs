//! The smallest Pingora reverse proxy, for `bench/proxy-compare.sh`: is a bare
//! Pingora proxy also ~0.5× nginx on this machine, i.e. is the ceiling Pingora's rather than
//! acs-proxy's (cloudflare/pingora#372)?
//!
//! Everything acs-proxy adds is left out — empty CTX, no filters, no routing, no logging, no
//! metrics, no NATS — while what shapes throughput is kept as acs-proxy has it (crates/proxy/src
//! `run_with_metrics` and `snapshot::make_peer`): the same Pingora, mimalloc, the `ServerConf`
//! fields acs-proxy sets at their defaults, the same peer timeouts and upstream keep-alive pool.
//!
//! ```text
//! cargo build --release -p acs-proxy --example bare_pingora
//! target/release/examples/bare_pingora --listen 127.0.0.1:8081 --upstream 127.0.0.1:9001 --threads 2
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use pingora::prelude::{HttpPeer, ProxyHttp, Result, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    listen: SocketAddr,
    /// The one backend every request goes to.
    #[arg(long)]
    upstream: SocketAddr,
    /// Proxy worker threads (default: number of CPUs, as acs-proxy).
    #[arg(long)]
    threads: Option<usize>,
}

struct Bare(HttpPeer);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.0.clone()))
    }
}

fn main() {
    let args = Args::parse();
    // acs-proxy's defaults: `ServerTuning::default()` and `PeerTimeouts::default()`.
    let conf = ServerConf {
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        work_stealing: true,
        listener_tasks_per_fd: 1,
        upstream_keepalive_pool_size: 128,
        // SIGTERM stops it within a second (Pingora's default grace is 5 minutes).
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut peer = HttpPeer::new(args.upstream, false, String::new());
    peer.options.connection_timeout = Some(Duration::from_secs(1));
    peer.options.read_timeout = Some(Duration::from_secs(60));
    peer.options.write_timeout = Some(Duration::from_secs(60));
    peer.options.idle_timeout = Some(Duration::from_secs(60));

    let mut proxy =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, Bare(peer), "bare");
    proxy.add_tcp(&args.listen.to_string());
    server.add_service(proxy);
    server.run_forever();
}
