//! Trading benchmark: `cargo bench -p liutong --bench trading` (release build).
//!
//! Against the real `liutong` binary, on SQLite and on PostgreSQL:
//!
//! 1. the raw commit rate of the same database (one-row write transactions, same concurrency);
//! 2. full trades per second at concurrency 32 — each trade is register, publish, upload the
//!    encrypted 1 KiB file, deposit the delivery key, register and publish a demand, confirm,
//!    settle, deliver (JSON) and queryDeliverResult: 10 requests;
//!
//! and once (SQLite; the database plays no part): a 5 GiB file uploaded and delivered in
//! streaming mode, first once, then in rounds of (plain loopback TCP copy of the same size,
//! delivery read by reqwest, delivery read by the copy's own socket reader), on the server
//! that received the file and again on one restarted with `verify_every_delivery = true`;
//! and the server's resident memory (idle, peak while uploading, peak while delivering).
//!
//! Settings (environment): LIUTONG_BENCH_CONCURRENCY (32), LIUTONG_BENCH_SECONDS (20, trade run
//! length; 0 skips the trades), LIUTONG_BENCH_BIG_GIB (5; 0 skips the big file),
//! LIUTONG_TEST_POSTGRES (admin URL, default postgres://postgres@127.0.0.1:5432/test; "skip"
//! skips PostgreSQL), LIUTONG_BENCH_SQLITE ("skip" skips SQLite), LIUTONG_BENCH_SERVER_LOG (the
//! servers' log filter, default "warn"; "info,sqlx::query=debug" logs every statement inside
//! its request's span, which is how the statements per request were counted),
//! LIUTONG_BENCH_SERVER_CONFIG (TOML for the servers' config file, e.g.
//! "max_db_connections = 4"), LIUTONG_BENCH_DELIVERY_ROUNDS (3: rounds of loopback copy,
//! delivery read by reqwest and delivery read by a bare socket, per server),
//! LIUTONG_BENCH_BASELINE_BIN (path of another build's `liutong` binary: the trades are run
//! with it too, right after this build's, for a before/after in one run;
//! LIUTONG_BENCH_BASELINE_FIRST=1 runs it first).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{Api, drop_postgres_database, env_u64, load_average as uptime, postgres_database};
use liutong_testkit::age::encrypt as age_encrypt;

const OPERATOR_PASSWORD: &str = "bench-operator-1";

/// (VmRSS, VmHWM) of a process, in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

struct Server {
    child: tokio::process::Child,
    base: String,
    /// Its keys and files (and config file), kept while a server uses them.
    dir: Arc<tempfile::TempDir>,
}

impl Server {
    async fn start(database_url: &str) -> Server {
        Server::start_bin(Path::new(env!("CARGO_BIN_EXE_liutong")), database_url).await
    }

    /// A server run from `bin`: this build's `liutong`, or a baseline build to compare with.
    async fn start_bin(bin: &Path, database_url: &str) -> Server {
        Server::start_with(
            bin,
            database_url,
            Arc::new(tempfile::tempdir().expect("temp dir")),
            &std::env::var("LIUTONG_BENCH_SERVER_CONFIG").unwrap_or_default(),
        )
        .await
    }

    /// A server on the keys and files of `dir`, with `config` as its TOML file.
    async fn start_in(database_url: &str, dir: Arc<tempfile::TempDir>, config: &str) -> Server {
        Server::start_with(
            Path::new(env!("CARGO_BIN_EXE_liutong")),
            database_url,
            dir,
            config,
        )
        .await
    }

    async fn start_with(
        bin: &Path,
        database_url: &str,
        dir: Arc<tempfile::TempDir>,
        config: &str,
    ) -> Server {
        let config_file = dir.path().join("liutong.toml");
        std::fs::write(&config_file, config).expect("config file");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let child = tokio::process::Command::new(bin)
            .arg("--config")
            .arg(&config_file)
            .arg("serve")
            .args(["--listen", &addr.to_string(), "--database", database_url])
            .arg("--keys-dir")
            .arg(dir.path().join("keys"))
            .arg("--storage-dir")
            .arg(dir.path().join("files"))
            .current_dir(dir.path())
            .env_remove("LIUTONG_CONFIG")
            .env("LIUTONG_OPERATOR_PASSWORD", OPERATOR_PASSWORD)
            .env(
                "LIUTONG_LOG",
                std::env::var("LIUTONG_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .kill_on_drop(true)
            .spawn()
            .expect("liutong starts");
        let base = format!("http://{addr}");
        let client = reqwest::Client::new();
        for _ in 0..600 {
            if client
                .get(format!("{base}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Server { child, base, dir };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("liutong did not come up");
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("pid")
    }
}

/// What every trade reuses: one provider identity (a key may serve many resources), its
/// sealed deposit and the encrypted 1 KiB file.
struct Fixture {
    recipient: String,
    sealed_b64: String,
    ciphertext: Vec<u8>,
}

async fn fixture(api: &Api) -> Fixture {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let keys = api
        .call(api.client.get(format!("{}/v1/keys", api.base)))
        .await;
    let escrow = keys["escrowRecipient"].as_str().expect("escrow");
    let identity_file = format!(
        "# public key: {recipient}\n{}\n",
        identity.to_string().expose_secret()
    );
    Fixture {
        sealed_b64: base64::engine::general_purpose::STANDARD
            .encode(age_encrypt(escrow, identity_file.as_bytes())),
        ciphertext: age_encrypt(&recipient, &[7u8; 1024]),
        recipient,
    }
}

struct Worker {
    provider: String,
    provider_token: String,
    buyer: String,
    buyer_token: String,
}

/// One full trade; returns its latency.
async fn trade(api: &Api, fx: &Fixture, w: &Worker, n: u64) -> Duration {
    let start = Instant::now();
    let reg = api
        .post(
            "/registerData",
            Some(&w.provider_token),
            json!({
                "owner": w.provider, "key_words": ["ct", "bench"], "dataID": format!("d{n}"),
                "description": "benchmark data", "data_type": "dataset", "data_format": "bin",
                "data_size": 1.0, "data_category": ["bench"],
                "collection_time": "2024-05-01 08:30:00", "country": "CN",
                "resource_url": "https://provider.invalid/d.age",
                "ownership_confirm": "https://provider.invalid/o",
                "public_key": fx.recipient,
            }),
        )
        .await["registrationID"]
        .as_str()
        .expect("reg")
        .to_owned();
    api.post(
        "/publishData",
        Some(&w.provider_token),
        json!({"owner": w.provider, "registrationID": reg, "free": false, "price": 1.5}),
    )
    .await;
    api.call(
        api.client
            .put(format!("{}/v1/data/file", api.base))
            .query(&[("registrationID", reg.as_str())])
            .header("X-Auth-Token", &w.provider_token)
            .header("Content-Type", "application/octet-stream")
            .body(fx.ciphertext.clone()),
    )
    .await;
    api.put_json(
        "/v1/data/deliveryKey",
        &[("registrationID", reg.as_str())],
        &w.provider_token,
        json!({"sealedIdentity": fx.sealed_b64}),
    )
    .await;
    let demand = api
        .post(
            "/registerDemand",
            Some(&w.buyer_token),
            json!({"demander": w.buyer, "data_category": ["bench"], "key_words": ["ct"],
                   "data_type": "dataset"}),
        )
        .await["demandID"]
        .as_str()
        .expect("demand")
        .to_owned();
    api.post(
        "/publishDemand",
        Some(&w.buyer_token),
        json!({"demander": w.buyer, "demandID": demand}),
    )
    .await;
    let confirm = api
        .post(
            "/confirmDemand",
            Some(&w.buyer_token),
            json!({"demander": w.buyer, "demandID": demand, "registrationID": reg}),
        )
        .await["confirmID"]
        .as_str()
        .expect("confirm")
        .to_owned();
    let settled = api
        .post(
            "/settlement",
            Some(&w.buyer_token),
            json!({"confirmID": confirm}),
        )
        .await;
    let delivered = api
        .post(
            "/deliver",
            Some(&w.buyer_token),
            json!({"licenses": settled["licenses"]}),
        )
        .await;
    assert!(delivered["data_file"].is_string());
    let proofs = api
        .call(
            api.client
                .get(format!("{}/queryDeliverResult", api.base))
                .query(&[("confirmID", confirm.as_str())])
                .header("X-Auth-Token", &w.buyer_token),
        )
        .await;
    assert_eq!(proofs["delivery_proof"].as_array().map(Vec::len), Some(1));
    start.elapsed()
}

/// Commits per second of one-row write transactions, through liutong's own store layer.
async fn commit_rate(database_url: &str, concurrency: usize, seconds: u64) -> f64 {
    let store = liutong::store::Store::connect(database_url, concurrency as u32)
        .await
        .expect("store");
    sqlx::query("CREATE TABLE bench_commits (id TEXT PRIMARY KEY, v BIGINT NOT NULL)")
        .execute(store.pool())
        .await
        .expect("table");
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let store = store.clone();
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let mut tx = store.begin_write().await.expect("begin");
                    sqlx::query("INSERT INTO bench_commits (id, v) VALUES ($1, $2)")
                        .bind(uuid::Uuid::new_v4().to_string())
                        .bind(1i64)
                        .execute(&mut *tx)
                        .await
                        .expect("insert");
                    tx.commit().await.expect("commit");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    store.close().await;
    rate
}

struct TradeResult {
    commits_per_s: f64,
    trades_per_s: f64,
    trades: usize,
    p50_ms: f64,
    p99_ms: f64,
}

async fn trades(bin: &Path, database_url: &str, concurrency: usize, seconds: u64) -> TradeResult {
    let server = Server::start_bin(bin, database_url).await;
    let commits_per_s = commit_rate(database_url, concurrency, 5).await;
    let api = Api {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency * 2)
            .build()
            .expect("client"),
        base: server.base.clone(),
    };
    let fx = Arc::new(fixture(&api).await);
    let operator = api.token("operator", OPERATOR_PASSWORD).await;
    let mut workers = Vec::new();
    for i in 0..concurrency {
        let provider = format!("prov{i}");
        let buyer = format!("buyer{i}");
        let provider_token = api.user(&provider).await;
        let buyer_token = api.user(&buyer).await;
        let buyer_key = age::x25519::Identity::generate().to_public().to_string();
        api.put_json(
            "/v1/account/deliveryKey",
            &[],
            &buyer_token,
            json!({"publicKey": buyer_key}),
        )
        .await;
        api.post(
            "/v1/admin/accounts/credit",
            Some(&operator),
            json!({"username": buyer, "amount": 1_000_000, "reference": format!("bench-{i}")}),
        )
        .await;
        workers.push(Arc::new(Worker {
            provider,
            provider_token,
            buyer,
            buyer_token,
        }));
    }
    // Warm up: one trade per worker, untimed.
    let counter = Arc::new(AtomicU64::new(0));
    let warm: Vec<_> = workers
        .iter()
        .map(|w| {
            let (api, fx, w, counter) = (
                api.clone(),
                Arc::clone(&fx),
                Arc::clone(w),
                Arc::clone(&counter),
            );
            tokio::spawn(async move {
                trade(&api, &fx, &w, counter.fetch_add(1, Ordering::Relaxed)).await
            })
        })
        .collect();
    for t in warm {
        t.await.expect("warm-up");
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = workers
        .iter()
        .map(|w| {
            let (api, fx, w, counter) = (
                api.clone(),
                Arc::clone(&fx),
                Arc::clone(w),
                Arc::clone(&counter),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    latencies
                        .push(trade(&api, &fx, &w, counter.fetch_add(1, Ordering::Relaxed)).await);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("worker"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    let audit = api
        .call(
            api.client
                .get(format!("{}/v1/admin/ledger/audit", api.base))
                .header("X-Auth-Token", &operator),
        )
        .await;
    assert_eq!(audit["balanced"], true, "{audit}");
    TradeResult {
        commits_per_s,
        trades_per_s: latencies.len() as f64 / elapsed,
        trades: latencies.len(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    }
}

/// A stream of `total` bytes from a repeated 1 MiB pseudo-random block.
fn generated(total: u64) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let block = Bytes::from(block);
    futures_util::stream::unfold(0u64, move |sent| {
        let block = block.clone();
        async move {
            if sent >= total {
                return None;
            }
            let n = (total - sent).min(block.len() as u64) as usize;
            Some((Ok(block.slice(..n)), sent + n as u64))
        }
    })
}

/// Plain loopback TCP: one socket writes `total` bytes, another reads and discards them.
async fn loopback_copy(total: u64) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let writer = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let block = vec![0x5au8; 256 * 1024];
        let mut sent = 0u64;
        while sent < total {
            let n = (total - sent).min(block.len() as u64) as usize;
            socket.write_all(&block[..n]).await.expect("write");
            sent += n as u64;
        }
    });
    let start = Instant::now();
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    while got < total {
        let n = socket.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    writer.await.expect("writer");
    got as f64 / start.elapsed().as_secs_f64()
}

struct BigResult {
    bytes: u64,
    upload_mib_s: f64,
    /// The first delivery, right after the upload.
    first_mib_s: f64,
    /// The steady state, on the server that received the file.
    confirmed: Vec<Round>,
    /// The same deliveries from a server with `verify_every_delivery = true`.
    hashing: Vec<Round>,
    idle_rss_kib: u64,
    upload_peak_kib: u64,
    deliver_peak_kib: u64,
    hashed_growth_kib: u64,
}

/// One round: the loopback copy, then the file delivered to each reader, back to back, so
/// that each ratio compares runs a few seconds apart on this noisy machine.
struct Round {
    loopback_mib_s: f64,
    reqwest_mib_s: f64,
    socket_mib_s: f64,
}

/// The median of `values` (the upper one of an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// `rounds` rounds of deliveries to both readers, each beside a loopback copy; also the
/// server's peak RSS over them.
async fn delivery_rounds(
    api: &Api,
    pid: u32,
    token: &str,
    licenses: &Value,
    total: u64,
    rounds: u64,
) -> (Vec<Round>, u64) {
    let per_s = |s: f64| total as f64 / s / (1 << 20) as f64;
    let mut out = Vec::new();
    let mut peak = 0;
    for _ in 0..rounds {
        let loopback = loopback_copy(total).await / (1 << 20) as f64;
        let (reqwest_s, p1) =
            timed_delivery(api, pid, token, licenses, total, Reader::Reqwest).await;
        let (socket_s, p2) = timed_delivery(api, pid, token, licenses, total, Reader::Socket).await;
        peak = peak.max(p1).max(p2);
        out.push(Round {
            loopback_mib_s: loopback,
            reqwest_mib_s: per_s(reqwest_s),
            socket_mib_s: per_s(socket_s),
        });
    }
    (out, peak)
}

/// Samples the server's RSS every 20 ms until `stop` is set; returns the maximum seen.
fn sample_rss(pid: u32, stop: Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(rss(pid).0);
            std::thread::sleep(Duration::from_millis(20));
        }
        peak.max(rss(pid).0)
    })
}

async fn big_file(gib: u64, dir: &Path) -> BigResult {
    let total = gib << 30;
    let url = liutong::config::sqlite_url(&dir.join("big.db"));
    let server = Server::start(&url).await;
    let api = Api {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(3600))
            .build()
            .expect("client"),
        base: server.base.clone(),
    };
    let fx = fixture(&api).await;
    let operator = api.token("operator", OPERATOR_PASSWORD).await;
    let provider_token = api.user("bigprov").await;
    let buyer_token = api.user("bigbuyer").await;
    let buyer_key = age::x25519::Identity::generate().to_public().to_string();
    api.put_json(
        "/v1/account/deliveryKey",
        &[],
        &buyer_token,
        json!({"publicKey": buyer_key}),
    )
    .await;
    api.post(
        "/v1/admin/accounts/credit",
        Some(&operator),
        json!({"username": "bigbuyer", "amount": 100, "reference": "big"}),
    )
    .await;
    let reg = api
        .post(
            "/registerData",
            Some(&provider_token),
            json!({
                "owner": "bigprov", "key_words": ["big"], "dataID": "big",
                "description": "5 GiB", "data_type": "dataset", "data_format": "bin",
                "data_size": total as f64, "data_category": ["bench"],
                "collection_time": "2024-05-01 08:30:00", "country": "CN",
                "resource_url": "https://provider.invalid/big.age",
                "ownership_confirm": "https://provider.invalid/o", "public_key": fx.recipient,
            }),
        )
        .await["registrationID"]
        .as_str()
        .expect("reg")
        .to_owned();
    api.post(
        "/publishData",
        Some(&provider_token),
        json!({"owner": "bigprov", "registrationID": reg, "free": false, "price": 9.99}),
    )
    .await;
    api.put_json(
        "/v1/data/deliveryKey",
        &[("registrationID", reg.as_str())],
        &provider_token,
        json!({"sealedIdentity": fx.sealed_b64}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = server.pid();
    let idle_rss_kib = rss(pid).0;

    // Upload (the bytes stand in for an age file: the host does not look inside).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_rss(pid, Arc::clone(&stop));
    let start = Instant::now();
    let up = api
        .call(
            api.client
                .put(format!("{}/v1/data/file", api.base))
                .query(&[("registrationID", reg.as_str())])
                .header("X-Auth-Token", &provider_token)
                .header("Content-Type", "application/octet-stream")
                .body(reqwest::Body::wrap_stream(generated(total))),
        )
        .await;
    let upload_s = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let upload_peak_kib = sampler.join().expect("sampler");
    assert_eq!(up["size"].as_u64(), Some(total));

    let demand = api
        .post(
            "/registerDemand",
            Some(&buyer_token),
            json!({"demander": "bigbuyer", "data_category": ["bench"], "key_words": ["big"],
                   "data_type": "dataset"}),
        )
        .await["demandID"]
        .as_str()
        .expect("demand")
        .to_owned();
    api.post(
        "/publishDemand",
        Some(&buyer_token),
        json!({"demander": "bigbuyer", "demandID": demand}),
    )
    .await;
    let confirm = api
        .post(
            "/confirmDemand",
            Some(&buyer_token),
            json!({"demander": "bigbuyer", "demandID": demand, "registrationID": reg}),
        )
        .await["confirmID"]
        .as_str()
        .expect("confirm")
        .to_owned();
    let settled = api
        .post(
            "/settlement",
            Some(&buyer_token),
            json!({"confirmID": confirm}),
        )
        .await;

    // Twice: right after the upload the file's pages were just written, and reading them
    // cost twice the CPU in the profile; the second delivery is the steady state.
    let licenses = &settled["licenses"];
    let rounds = env_u64("LIUTONG_BENCH_DELIVERY_ROUNDS", 3).max(1);
    let (first_s, _) =
        timed_delivery(&api, pid, &buyer_token, licenses, total, Reader::Reqwest).await;
    let (confirmed, deliver_peak_kib) =
        delivery_rounds(&api, pid, &buyer_token, licenses, total, rounds).await;
    // The same file from a server that hashes every delivery (what every delivery did before
    // files were confirmed by their stamp), on the same database, keys and files.
    let dir = Arc::clone(&server.dir);
    drop(server);
    let server = Server::start_in(&url, dir, "verify_every_delivery = true\n").await;
    let api = Api {
        base: server.base.clone(),
        ..api
    };
    let hashed_idle_kib = rss(server.pid()).0;
    let (hashing, hashed_peak_kib) =
        delivery_rounds(&api, server.pid(), &buyer_token, licenses, total, rounds).await;
    drop(server);
    let per_s = |s: f64| total as f64 / s / (1 << 20) as f64;
    BigResult {
        bytes: total,
        upload_mib_s: per_s(upload_s),
        first_mib_s: per_s(first_s),
        confirmed,
        hashing,
        idle_rss_kib,
        upload_peak_kib,
        deliver_peak_kib,
        hashed_growth_kib: hashed_peak_kib.saturating_sub(hashed_idle_kib),
    }
}

/// Who reads a streaming delivery.
#[derive(Clone, Copy)]
enum Reader {
    /// reqwest's `bytes_stream`, as an application would.
    Reqwest,
    /// The loopback copy's own reader: the request written by hand, then `read` into one
    /// 256 KiB buffer. The client side then costs what it costs in the copy, so the ratio
    /// measures the server's sending path alone.
    Socket,
}

/// One streaming delivery of `total` bytes, counted and discarded: its seconds and the
/// server's peak RSS meanwhile.
async fn timed_delivery(
    api: &Api,
    pid: u32,
    token: &str,
    licenses: &Value,
    total: u64,
    reader: Reader,
) -> (f64, u64) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_rss(pid, Arc::clone(&stop));
    let start = Instant::now();
    let got = match reader {
        Reader::Reqwest => reqwest_delivery(api, token, licenses).await,
        Reader::Socket => socket_delivery(api, token, licenses).await,
    };
    let seconds = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().expect("sampler");
    assert_eq!(got, total);
    (seconds, peak)
}

async fn reqwest_delivery(api: &Api, token: &str, licenses: &Value) -> u64 {
    let response = api
        .client
        .post(format!("{}/deliver", api.base))
        .header("X-Auth-Token", token)
        .header("Accept", "application/octet-stream")
        .json(&json!({"licenses": licenses}))
        .send()
        .await
        .expect("deliver");
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut got = 0u64;
    while let Some(chunk) = body.next().await {
        got += chunk.expect("chunk").len() as u64;
    }
    got
}

/// `POST /deliver` over a bare socket: the body's bytes counted as the loopback copy counts
/// them. The response must be a 200 with a `Content-Length` (a streaming delivery has one).
async fn socket_delivery(api: &Api, token: &str, licenses: &Value) -> u64 {
    let addr = api.base.trim_start_matches("http://").to_owned();
    let body = serde_json::to_vec(&json!({"licenses": licenses})).expect("body");
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /deliver HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {token}\r\n\
         Accept: application/octet-stream\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.expect("write");
    socket.write_all(&body).await.expect("write");
    let mut buf = vec![0u8; 256 * 1024];
    let mut filled = 0;
    let header_end = loop {
        let n = socket.read(&mut buf[filled..]).await.expect("read");
        assert!(n > 0, "connection closed inside the response head");
        filled += n;
        if let Some(i) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = std::str::from_utf8(&buf[..header_end]).expect("head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: u64 = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .expect("Content-Length");
    let mut got = (filled - header_end) as u64;
    while got < length {
        let n = socket.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    got
}

fn print_trades(backend: &str, r: &TradeResult, concurrency: usize) {
    println!(
        "| {backend} | {concurrency} | {:.1} | {} | {:.0} | {:.0} | {:.0} |",
        r.trades_per_s, r.trades, r.p50_ms, r.p99_ms, r.commits_per_s
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let concurrency = env_u64("LIUTONG_BENCH_CONCURRENCY", 32) as usize;
    let seconds = env_u64("LIUTONG_BENCH_SECONDS", 20);
    let gib = env_u64("LIUTONG_BENCH_BIG_GIB", 5);
    let admin = liutong_testkit::postgres::admin_url();
    let dir: PathBuf = tempfile::tempdir().expect("dir").keep();
    println!("load average at start: {}", uptime());
    println!();
    if seconds > 0 {
        run_trades(concurrency, seconds, &admin, &dir).await;
    }
    if gib > 0 {
        let big = big_file(gib, &dir).await;
        println!();
        println!(
            "| file | upload MiB/s | first delivery MiB/s | idle RSS MiB | peak RSS upload MiB | peak RSS delivery MiB | RSS growth hashing MiB |"
        );
        println!("|---|---|---|---|---|---|---|");
        println!(
            "| {:.0} GiB | {:.0} | {:.0} | {:.1} | {:.1} (+{:.1}) | {:.1} (+{:.1}) | +{:.1} |",
            big.bytes as f64 / (1u64 << 30) as f64,
            big.upload_mib_s,
            big.first_mib_s,
            mib(big.idle_rss_kib),
            mib(big.upload_peak_kib),
            mib(big.upload_peak_kib.saturating_sub(big.idle_rss_kib)),
            mib(big.deliver_peak_kib),
            mib(big.deliver_peak_kib.saturating_sub(big.idle_rss_kib)),
            mib(big.hashed_growth_kib),
        );
        println!();
        println!(
            "| server | round | loopback copy MiB/s | read by reqwest MiB/s | ÷ loopback | read by the copy's socket reader MiB/s | ÷ loopback |"
        );
        println!("|---|---|---|---|---|---|---|");
        for (server, rounds) in [
            ("confirmed file (default)", &big.confirmed),
            ("hashing every delivery", &big.hashing),
        ] {
            for (i, r) in rounds.iter().enumerate() {
                println!(
                    "| {server} | {} | {:.0} | {:.0} | {:.1} % | {:.0} | {:.1} % |",
                    i + 1,
                    r.loopback_mib_s,
                    r.reqwest_mib_s,
                    100.0 * r.reqwest_mib_s / r.loopback_mib_s,
                    r.socket_mib_s,
                    100.0 * r.socket_mib_s / r.loopback_mib_s,
                );
            }
            let share = |f: fn(&Round) -> f64| {
                median(
                    rounds
                        .iter()
                        .map(|r| 100.0 * f(r) / r.loopback_mib_s)
                        .collect(),
                )
            };
            println!(
                "| **{server}** | **median** | | | **{:.1} %** | | **{:.1} %** |",
                share(|r| r.reqwest_mib_s),
                share(|r| r.socket_mib_s),
            );
        }
        println!();
        println!("load average at end: {}", uptime());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

async fn run_trades(concurrency: usize, seconds: u64, admin: &str, dir: &Path) {
    // Each database is run with this build, then (when given) with a baseline build of the
    // server, on a fresh database: before and after, side by side in one run.
    let this_build = PathBuf::from(env!("CARGO_BIN_EXE_liutong"));
    let mut builds = vec![("", this_build)];
    if let Ok(baseline) = std::env::var("LIUTONG_BENCH_BASELINE_BIN") {
        builds.push((" (baseline)", PathBuf::from(baseline)));
        // The machine's load drifts during a run: the order can be swapped to check for bias.
        if std::env::var("LIUTONG_BENCH_BASELINE_FIRST").as_deref() == Ok("1") {
            builds.reverse();
        }
    }
    println!("| database | concurrency | trades/s | trades | p50 ms | p99 ms | raw commits/s |");
    println!("|---|---|---|---|---|---|---|");
    if std::env::var("LIUTONG_BENCH_SQLITE").as_deref() != Ok("skip") {
        for (i, (label, bin)) in builds.iter().enumerate() {
            let db = liutong::config::sqlite_url(&dir.join(format!("trades{i}.db")));
            let sqlite = trades(bin, &db, concurrency, seconds).await;
            print_trades(&format!("SQLite{label}"), &sqlite, concurrency);
        }
    }
    if admin != "skip" {
        for (label, bin) in &builds {
            match postgres_database(admin).await {
                Some((url, name)) => {
                    let pg = trades(bin, &url, concurrency, seconds).await;
                    print_trades(&format!("PostgreSQL{label}"), &pg, concurrency);
                    drop_postgres_database(admin, &name).await;
                }
                None => println!("| PostgreSQL | – | not reachable at {admin} | | | | |"),
            }
        }
    }
    println!();
    println!("load average after trades: {}", uptime());
}
