//! One HTTP/1.1 `GET` on a fresh connection, written and read as raw bytes over TCP: no client
//! library stands between a test and the server it checks, and nothing is pooled or retried.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

/// How long [`get`] waits for the whole answer.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// `GET path` on `addr` with `Connection: close`: `(status, body)`. `Err` when connecting,
/// writing or reading fails, or after [`TIMEOUT`]. An answer without a status line has status 0
/// (and the whole answer as its body).
pub async fn get(addr: impl ToSocketAddrs, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: acs-test\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok(parse(&String::from_utf8_lossy(&raw)))
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {TIMEOUT:?}")))
}

/// Polls `GET path` on `addr` every 100 ms until it answers `want` (a status that follows some
/// state, like `/readyz`); `Err` with the last answer after `within`.
pub async fn until_status(
    addr: std::net::SocketAddr,
    path: &str,
    want: u16,
    within: Duration,
) -> Result<(), String> {
    crate::poll::eventually(within, Duration::from_millis(100), || async move {
        match get(addr, path).await {
            Ok((status, _)) if status == want => Ok(()),
            other => Err(format!("GET {path}: want {want}, got {other:?}")),
        }
    })
    .await
}

/// `(status, body)` of a raw HTTP/1.1 answer.
fn parse(text: &str) -> (u16, String) {
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok());
    match (status, text.split_once("\r\n\r\n")) {
        (Some(status), Some((_, body))) => (status, body.to_string()),
        (Some(status), None) => (status, String::new()),
        (None, _) => (0, text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_status_and_body() {
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n"),
            (200, "ok\n".to_string())
        );
        assert_eq!(parse("HTTP/1.1 404 Not Found\r\n"), (404, String::new()));
        assert_eq!(parse("garbage"), (0, "garbage".to_string()));
        assert_eq!(parse(""), (0, String::new()));
    }
}
