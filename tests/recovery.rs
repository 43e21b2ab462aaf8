//! The warehouse goes away and comes back: requests fail fast with 08006/503 while it is
//! gone, and the same server answers again by itself once it is back.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use common::*;

/// A TCP proxy to PostgreSQL that can be switched off (dropping every open connection).
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused-ish
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns2.lock().unwrap().push(task);
            }
        });
        Proxy { addr, up, conns }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Warehouse lost and restored: 503/08006 within the timeout, then service resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_resumes_when_the_warehouse_returns() {
    let (db_name, db) = fresh_db("recovery").await;
    let proxy = Proxy::start().await;
    let url = format!("postgres://postgres@{}/{db_name}", proxy.addr);
    let config = parse_config(&config_toml(&url, "connect_timeout = \"1s\"\npool_size = 2", false));
    let server = tidemark::server::Server::start(Arc::new(config)).await.expect("server starts");
    let addr = server.http_addr.expect("http bound");
    let http = http_client();

    let (status, body) = query(&http, addr, "SELECT 41 + 1 AS answer", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0][0], 42);

    proxy.down();
    let started = Instant::now();
    let (status, body) = query(&http, addr, "SELECT 1", &[]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["sqlstate"], "08006", "{body}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    // Pooled connections the outage broke fail one by one (08006); once a new connection
    // cannot be opened the breaker opens and requests fail at once without trying.
    let mut fast = false;
    for _ in 0..10 {
        let (status, body) = query(&http, addr, "SELECT 2", &[]).await;
        assert_eq!((status, body["sqlstate"].clone()), (503, serde_json::json!("08006")), "{body}");
        if body["detail"].as_str().unwrap().contains("failing fast") {
            fast = true;
            break;
        }
    }
    assert!(fast, "the breaker opened");
    let (status, _) = get_json(&http, addr, "/healthz").await;
    assert_eq!(status, 200, "the server itself keeps serving");
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the readiness memo
    let ready = http.get(format!("http://{addr}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "not ready while the warehouse is gone");
    assert!(ready.text().await.unwrap().starts_with("not ready: warehouse"));

    proxy.up();
    let started = Instant::now();
    loop {
        let (status, body) = query(&http, addr, "SELECT 41 + 1 AS answer", &[]).await;
        if status == 200 {
            assert_eq!(body["rows"][0][0], 42);
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let ready = http.get(format!("http://{addr}/readyz")).send().await.unwrap();
            assert_eq!(ready.status(), 200, "ready again");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not recovered after 5 s: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.shutdown().await;
    drop(db);
    drop_db(&db_name).await;
}
