//! The webhook over HTTPS with keep-alive, as a separate `jobtrace webhook` process: throughput
//! and latency at concurrency 1, 16 and 64 (closed loop), latency at a fixed 1,000 requests per
//! second (open loop, measured from each request's scheduled time), and the server's memory.
//! The load generator runs on the same two cores as the server.

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "workload.rs"]
mod workload;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

struct Server {
    child: Child,
    addr: SocketAddr,
    ca: Vec<u8>,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_server() -> Server {
    let pki = support::TestPki::generate();
    let dir = std::env::temp_dir().join(format!("jobtrace-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tls.crt"), &pki.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &pki.key_pem).unwrap();
    let (port, admin) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_jobtrace"))
        .args(["webhook", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{admin}")])
        .arg("--tls-cert-file")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key-file")
        .arg(dir.join("tls.key"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start jobtrace webhook");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", admin)).await {
            tcp.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = String::new();
            let _ = tcp.read_to_string(&mut out).await;
            if out.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the webhook never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server {
        child,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        ca: pki.ca_der,
        dir,
    }
}

/// One keep-alive HTTP/1.1 connection over TLS.
struct Conn {
    stream: TlsStream<TcpStream>,
    request: Arc<Vec<u8>>,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr, ca: &[u8], body: &[u8]) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca.to_vec())).unwrap();
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let stream = connector
            .connect(ServerName::try_from("127.0.0.1").unwrap().to_owned(), tcp)
            .await
            .unwrap();
        let mut request = format!(
            "POST /mutate/jobs HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        Self {
            stream,
            request: Arc::new(request),
            buf: Vec::with_capacity(8192),
        }
    }

    /// Sends one review and reads the whole response.
    async fn post(&mut self) {
        self.stream.write_all(&self.request).await.unwrap();
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        loop {
            let n = self.stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).unwrap();
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .expect("content-length")
                    .parse()
                    .unwrap();
                if self.buf.len() >= end + 4 + length {
                    return;
                }
            }
        }
    }
}

struct Stats {
    requests: usize,
    seconds: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut samples: Vec<Duration>, seconds: f64) -> Stats {
    samples.sort_unstable();
    Stats {
        requests: samples.len(),
        seconds,
        p50: workload::quantile(&samples, 0.50),
        p99: workload::quantile(&samples, 0.99),
        max: *samples.last().unwrap(),
    }
}

/// `concurrency` connections, each sending its next request as soon as the last one returns.
async fn closed_loop(
    server: &Server,
    body: &[u8],
    concurrency: usize,
    duration: Duration,
) -> Stats {
    let mut tasks = Vec::new();
    let start = Instant::now() + Duration::from_millis(200);
    for _ in 0..concurrency {
        let mut conn = Conn::open(server.addr, &server.ca, body).await;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let mut samples = Vec::new();
            while start.elapsed() < duration {
                let sent = Instant::now();
                conn.post().await;
                samples.push(sent.elapsed());
            }
            samples
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    stats(all, duration.as_secs_f64())
}

/// `rate` requests per second spread over `connections`, each sent at its scheduled time whatever
/// the server does. Latency counts from the actual send (tokio's timer wakes up to a millisecond
/// late, which is the generator's delay, not the server's); the largest gap between schedule and
/// send is returned so a generator that fell behind shows.
async fn open_loop(
    server: &Server,
    body: &[u8],
    rate: u32,
    connections: u32,
    duration: Duration,
) -> (Stats, Duration) {
    let interval = Duration::from_secs(1) * connections / rate;
    let start = Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mut conn = Conn::open(server.addr, &server.ca, body).await;
        let offset = Duration::from_secs(1) * c / rate;
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut lag = Duration::ZERO;
            let mut scheduled = start + offset;
            while scheduled < start + duration {
                tokio::time::sleep_until(scheduled.into()).await;
                let sent = Instant::now();
                lag = lag.max(sent - scheduled);
                conn.post().await;
                samples.push(sent.elapsed());
                scheduled += interval;
            }
            (samples, lag)
        }));
    }
    let mut all = Vec::new();
    let mut lag = Duration::ZERO;
    for task in tasks {
        let (samples, task_lag) = task.await.unwrap();
        all.extend(samples);
        lag = lag.max(task_lag);
    }
    (stats(all, duration.as_secs_f64()), lag)
}

/// (current, peak) resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    let runtime = workload::runtime();
    runtime.block_on(async {
        let server = start_server().await;
        let pid = server.child.id();
        let body = workload::typical_review();
        let (idle, _) = rss_kib(pid);
        println!(
            "webhook_load: {seconds}s per run, body {} bytes, server idle RSS {} KiB",
            body.len(),
            idle
        );
        println!("| load | requests/s | p50 | p99 | max | server RSS after |");
        println!("|---|---|---|---|---|---|");
        for concurrency in [1, 16, 64] {
            let s = closed_loop(&server, &body, concurrency, duration).await;
            #[allow(clippy::cast_precision_loss)]
            let rps = s.requests as f64 / s.seconds;
            println!(
                "| closed loop, {concurrency} connections | {rps:.0} | {} | {} | {} | {} KiB |",
                micros(s.p50),
                micros(s.p99),
                micros(s.max),
                rss_kib(pid).0
            );
        }
        let (s, lag) = open_loop(&server, &body, 1000, 16, duration).await;
        #[allow(clippy::cast_precision_loss)]
        let rps = s.requests as f64 / s.seconds;
        println!(
            "| open loop, 1000/s target, 16 connections | {rps:.0} | {} | {} | {} | {} KiB |",
            micros(s.p50),
            micros(s.p99),
            micros(s.max),
            rss_kib(pid).0
        );
        println!(
            "webhook_load: open loop: largest delay between a request's schedule and its send {}",
            micros(lag)
        );
        let (rss, peak) = rss_kib(pid);
        println!(
            "webhook_load: server RSS now {rss} KiB, peak {peak} KiB ({}.{} MiB)",
            peak / 1024,
            (peak % 1024) * 10 / 1024
        );
    });
}
