//! A minimal stand-in for `demo-web` used by `bench/proxy-bench.sh` when `demo-web` is not
//! available: `GET /whoami` answers `{"instance":"<id>"}`, anything else answers the id.
//!
//! ```text
//! cargo run --release -p acs-proxy --example bench_backend -- --port 9001 --id be1
//! ```

use std::net::SocketAddr;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    port: u16,
    #[arg(long, default_value = "stand-in")]
    id: String,
    /// Accepted for compatibility with demo-web; no work is done.
    #[arg(long, default_value_t = 0)]
    work_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    let whoami = Bytes::from(format!("{{\"instance\":\"{}\"}}", args.id));
    let plain = Bytes::from(args.id.clone());
    loop {
        let (stream, _) = listener.accept().await?;
        let (whoami, plain) = (whoami.clone(), plain.clone());
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let body = if req.uri().path() == "/whoami" {
                        whoami.clone()
                    } else {
                        plain.clone()
                    };
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body)))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
