//! The webhook over HTTPS with keep-alive, as a separate `jobtrace webhook` process: throughput
//! and latency at concurrency 1, 16 and 64 (closed loop), latency at a fixed 1,000 requests per
//! second (open loop, measured from each request's scheduled time), and the server's memory.
//! The load generator runs on the same two cores as the server.

use jobtrace_testkit::{https, workload};
use std::time::{Duration, Instant};

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
    server: &https::Server,
    body: &[u8],
    concurrency: usize,
    duration: Duration,
) -> Stats {
    let mut tasks = Vec::new();
    let start = Instant::now() + Duration::from_millis(200);
    for _ in 0..concurrency {
        let mut conn = https::Conn::open(server.addr, &server.ca, body).await;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let mut samples = Vec::new();
            while start.elapsed() < duration {
                let sent = Instant::now();
                let _ = conn.post().await;
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
    server: &https::Server,
    body: &[u8],
    rate: u32,
    connections: u32,
    duration: Duration,
) -> (Stats, Duration) {
    let interval = Duration::from_secs(1) * connections / rate;
    let start = Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mut conn = https::Conn::open(server.addr, &server.ca, body).await;
        let offset = Duration::from_secs(1) * c / rate;
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut lag = Duration::ZERO;
            let mut scheduled = start + offset;
            while scheduled < start + duration {
                tokio::time::sleep_until(scheduled.into()).await;
                let sent = Instant::now();
                lag = lag.max(sent - scheduled);
                let _ = conn.post().await;
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
        let server = https::start_server().await;
        let pid = server.child.id();
        let body = workload::typical_review();
        let (idle, _) = workload::rss_kib(pid);
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
                workload::rss_kib(pid).0
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
            workload::rss_kib(pid).0
        );
        println!(
            "webhook_load: open loop: largest delay between a request's schedule and its send {}",
            micros(lag)
        );
        let (rss, peak) = workload::rss_kib(pid);
        println!(
            "webhook_load: server RSS now {rss} KiB, peak {peak} KiB ({}.{} MiB)",
            peak / 1024,
            (peak % 1024) * 10 / 1024
        );
    });
}
