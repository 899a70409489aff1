//! A `jobtrace webhook` process for the benchmarks, and HTTPS keep-alive connections to it.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::pki::TestPki;
use crate::process::free_port;

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub ca: Vec<u8>,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn start_server() -> Server {
    let pki = TestPki::generate();
    let dir = std::env::temp_dir().join(format!("jobtrace-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tls.crt"), &pki.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &pki.key_pem).unwrap();
    let (port, metrics) = (free_port(), free_port());
    let child = Command::new(crate::jobtrace_binary())
        .args(["webhook", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .arg("--tls-cert-file")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key-file")
        .arg(dir.join("tls.key"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start jobtrace webhook");
    let metrics: SocketAddr = format!("127.0.0.1:{metrics}").parse().unwrap();
    crate::poll::until(
        "the webhook ready",
        Duration::from_secs(20),
        Duration::from_millis(50),
        async || (crate::process::answers(metrics, "/readyz").await).then_some(()),
    )
    .await;
    Server {
        child,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        ca: pki.ca_der,
        dir,
    }
}

/// One keep-alive HTTP/1.1 connection over TLS.
pub struct Conn {
    stream: TlsStream<TcpStream>,
    request: Arc<Vec<u8>>,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn open(addr: SocketAddr, ca: &[u8], body: &[u8]) -> Self {
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
    pub async fn post(&mut self) -> &[u8] {
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
                    return &self.buf[end + 4..end + 4 + length];
                }
            }
        }
    }
}
