//! Marketplace benchmark: `cargo bench -p liutong --bench marketplace` (release build).
//!
//! On SQLite and on PostgreSQL, in one run:
//!
//! 1. `registerData` + `publishData` pairs per second at concurrency 32;
//! 2. `queryPublishedData` throughput at concurrency 32, next to a bare axum + sqlx server doing
//!    one single-row read per request on the same database (the ceiling);
//! 3. `queryMatchResults` latency with 100,000 published resources and 10,000 published demands:
//!    sequential queries (p50/p99 of an unloaded server) and at concurrency 32.
//!
//! liutong and the bare server each run in-process on their own two-worker Tokio runtime; the
//! load generator has its own. All three share the machine's two cores, as do the databases.
//!
//! Settings (environment): LIUTONG_BENCH_CONCURRENCY (32), LIUTONG_BENCH_SECONDS (10 per
//! throughput run), LIUTONG_BENCH_RESOURCES (100000), LIUTONG_BENCH_DEMANDS (10000),
//! LIUTONG_BENCH_MATCH_QUERIES (1000 sequential queries), LIUTONG_TEST_POSTGRES (admin URL or
//! "skip"), LIUTONG_BENCH_SQLITE ("skip"), LIUTONG_BENCH_KEEP_DB (keep the PostgreSQL database
//! to inspect query plans).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use liutong::domain::demand::Demand;
use liutong::domain::supply::{PriceTerms, Resource};
use liutong::domain::{PublicationStatus, Role};
use liutong::services::accounts::Accounts;
use liutong::store::Store;
use liutong::store::resources::ResourceInsert;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde_json::{Value, json};

mod common;
use common::{
    Api, Latencies, Running, drop_postgres_database, env_u64, load_average, postgres_database,
    run_server,
};

const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
const POOL_SIZE: u32 = 16;

struct Settings {
    concurrency: usize,
    seconds: u64,
    resources: usize,
    demands: usize,
    match_queries: usize,
}

fn start_liutong(database_url: String, dir: std::path::PathBuf) -> Running {
    run_server(move |stop, addr| async move {
        let mut config = liutong::Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            database_url,
            max_db_connections: POOL_SIZE,
            ..liutong::Config::default()
        };
        config.keys_dir = dir.join("keys");
        config.storage.dir = dir.join("files");
        let app = liutong::App::build(config).await.expect("liutong builds");
        let local = app.local_addr().expect("address");
        addr.send(format!("http://{local}"))
            .expect("report address");
        app.serve_until(async move {
            let _ = stop.await;
        })
        .await
        .expect("liutong serves");
    })
}

/// The ceiling: axum + sqlx (native driver), one indexed single-row read, the same envelope.
#[derive(Clone)]
enum BarePool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

async fn bare_read(
    State(pool): State<BarePool>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::Json<Value> {
    let id = q.get("id").cloned().unwrap_or_default();
    let sql = "SELECT owner, published, free, price FROM bare_items WHERE id = $1";
    let row: Option<(String, i64, i64, i64)> = match &pool {
        BarePool::Sqlite(p) => sqlx::query_as(sql).bind(&id).fetch_optional(p).await,
        BarePool::Postgres(p) => sqlx::query_as(sql).bind(&id).fetch_optional(p).await,
    }
    .expect("bare read");
    let data = row.map(|(owner, published, free, price)| {
        json!({"registrationID": id, "owner": owner,
               "publish_status": if published == 1 { "YES" } else { "NO" },
               "free": if free == 1 { "true" } else { "false" }, "price": price as f64 / 100.0})
    });
    axum::Json(json!({"status": 200, "code": "OK", "errorMsg": "", "data": data}))
}

async fn bare_pool(database_url: &str) -> BarePool {
    if database_url.starts_with("sqlite:") {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(database_url)
            .expect("url")
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
        BarePool::Sqlite(
            sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(POOL_SIZE)
                .connect_with(options)
                .await
                .expect("sqlite pool"),
        )
    } else {
        BarePool::Postgres(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(POOL_SIZE)
                .connect(database_url)
                .await
                .expect("pg pool"),
        )
    }
}

/// Creates and fills `bare_items` with the same ids liutong serves, then starts the server.
async fn start_bare(database_url: &str, ids: &[String]) -> Running {
    let pool = bare_pool(database_url).await;
    let exec = |sql: String| {
        let pool = pool.clone();
        async move {
            match &pool {
                BarePool::Sqlite(p) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(p)
                    .await
                    .map(|_| ()),
                BarePool::Postgres(p) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(p)
                    .await
                    .map(|_| ()),
            }
            .expect("bare setup");
        }
    };
    exec(
        "CREATE TABLE bare_items (id TEXT PRIMARY KEY, owner TEXT NOT NULL, \
          published BIGINT NOT NULL, free BIGINT NOT NULL, price BIGINT NOT NULL)"
            .to_owned(),
    )
    .await;
    for chunk in ids.chunks(500) {
        // Ids are generated by liutong (`reg_` + hex), so inlining them is safe.
        let values: Vec<String> = chunk
            .iter()
            .map(|id| format!("('{id}', 'bench', 1, 0, 1999)"))
            .collect();
        exec(format!(
            "INSERT INTO bare_items VALUES {}",
            values.join(", ")
        ))
        .await;
    }
    run_server(move |stop, addr| async move {
        let router = axum::Router::new()
            .route("/item", axum::routing::get(bare_read))
            .with_state(pool);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        addr.send(format!("http://{}", listener.local_addr().expect("addr")))
            .expect("report address");
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.await;
            })
            .await
            .expect("bare serves");
    })
}

type Job = Arc<dyn Fn(usize, u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Runs `job(worker, n)` back to back on `concurrency` workers for `seconds`, after one
/// untimed call per worker.
async fn hammer(concurrency: usize, seconds: u64, job: Job) -> Latencies {
    let warm: Vec<_> = (0..concurrency)
        .map(|w| tokio::spawn((job)(w, u64::MAX - w as u64)))
        .collect();
    for t in warm {
        t.await.expect("warm-up");
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|w| {
            let job = Arc::clone(&job);
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    job(w, n).await;
                    samples.push(t.elapsed());
                    n += 1;
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.expect("worker"));
    }
    Latencies::new(samples, start.elapsed())
}

fn register_body(owner: &str, data_id: &str) -> Value {
    json!({
        "owner": owner, "key_words": ["医疗", "CT", "lung"], "dataID": data_id,
        "description": "胸部CT影像及放射科标注 chest CT scans with labels",
        "data_type": "dataset", "data_format": "dicom", "data_size": 12.5,
        "data_category": ["healthcare"], "collection_time": "2024-05-01 08:30:00",
        "country": "CN", "resource_url": "https://provider.example/ct.tar.age",
        "ownership_confirm": "https://provider.example/ownership", "public_key": RECIPIENT
    })
}

/// A synthetic market: a vocabulary of Chinese and English keywords drawn with Zipf-like
/// frequencies (a few very common words, a long tail), so popular keywords have long posting
/// lists as in a real catalogue.
struct Market {
    rng: StdRng,
    vocabulary: Vec<String>,
    zipf: Zipf<f64>,
}

const CATEGORIES: &[&str] = &[
    "healthcare",
    "finance",
    "transport",
    "energy",
    "manufacturing",
    "agriculture",
    "education",
    "retail",
    "telecom",
    "government",
    "weather",
    "legal",
    "media",
    "insurance",
    "logistics",
    "tourism",
    "sports",
    "security",
    "chemistry",
    "biology",
];

impl Market {
    fn new(seed: u64, words: usize) -> Market {
        let mut rng = StdRng::seed_from_u64(seed);
        let hanzi: Vec<char> = "医疗影像诊断金融风险交通能源制造农业教育零售通信政府气象法律媒体保险物流旅游体育安全化学生物数据模型语音图像文本视频城市环境卫星遥感电力电网车辆航空船舶港口仓储客户信用交易市场价格销售用户行为社交搜索推荐广告游戏音乐地图导航工业设备传感器"
            .chars()
            .collect();
        let syllables = [
            "ka", "lo", "mi", "ren", "sto", "ta", "vu", "xen", "dor", "pel", "qui", "bra", "nex",
            "zor", "fil", "gam", "hut", "jin", "mor", "sal",
        ];
        let mut seen = std::collections::HashSet::new();
        let mut vocabulary = Vec::with_capacity(words);
        while vocabulary.len() < words {
            let word = if vocabulary.len() % 2 == 0 {
                let a = hanzi[rng.random_range(0..hanzi.len())];
                let b = hanzi[rng.random_range(0..hanzi.len())];
                format!("{a}{b}")
            } else {
                (0..rng.random_range(2..4))
                    .map(|_| syllables[rng.random_range(0..syllables.len())])
                    .collect()
            };
            if seen.insert(word.clone()) {
                vocabulary.push(word);
            }
        }
        let zipf = Zipf::new(words as f64, 1.0).expect("zipf");
        Market {
            rng,
            vocabulary,
            zipf,
        }
    }

    fn word(&mut self) -> String {
        let rank = self.zipf.sample(&mut self.rng) as usize;
        self.vocabulary[rank.clamp(1, self.vocabulary.len()) - 1].clone()
    }

    fn words(&mut self, min: usize, max: usize) -> Vec<String> {
        let n = self.rng.random_range(min..=max);
        let mut out: Vec<String> = Vec::with_capacity(n);
        while out.len() < n {
            let w = self.word();
            if !out.contains(&w) {
                out.push(w);
            }
        }
        out
    }

    fn data_type(&mut self) -> &'static str {
        match self.rng.random_range(0..100) {
            0..60 => "dataset",
            60..85 => "model",
            _ => "application",
        }
    }

    fn categories(&mut self) -> Vec<String> {
        (0..self.rng.random_range(1..=2))
            .map(|_| CATEGORIES[self.rng.random_range(0..CATEGORIES.len())].to_owned())
            .collect()
    }

    fn description(&mut self) -> String {
        let words = self.words(8, 16);
        format!("本数据资源包含{}，适用于训练与评估。", words.join("、"))
    }
}

/// Fills the database with published resources and demands through liutong's own store, so
/// the match index is exactly what publishing writes. Returns the demand and registration ids.
async fn seed_market(database_url: &str, s: &Settings) -> (Vec<String>, Vec<String>) {
    let store = Store::connect(database_url, POOL_SIZE)
        .await
        .expect("store");
    let accounts = Accounts::new(store.clone(), Duration::from_secs(3600));
    let owner_id = accounts
        .register("seeder", "seeder-pass-1", None, Role::Enterprise)
        .await
        .expect("seeder account");
    let mut market = Market::new(42, 3000);
    let now = liutong::domain::timefmt::now_millis();
    let mut resources = Vec::with_capacity(s.resources);
    for i in 0..s.resources {
        let id = format!("reg_bench{i:08}");
        resources.push(Resource {
            id: id.clone(),
            registration_id: id,
            data_id: format!("m{i}"),
            owner_account_id: owner_id.clone(),
            owner_name: "seeder".into(),
            controlled: false,
            key_words: market.words(3, 8),
            description: Some(market.description()),
            data_type: market.data_type().into(),
            data_format: Some("csv".into()),
            data_size: Some(1.0),
            data_category: market.categories(),
            collection_time: Some("2024-05-01T08:30:00Z".into()),
            country: Some("CN".into()),
            provider_url: None,
            resource_url: Some("https://provider.example/x".into()),
            ownership_confirm: Some("https://provider.example/o".into()),
            public_key: Some(RECIPIENT.into()),
            subscribe_confirm: None,
            protocol: None,
            is_open: None,
            source: None,
            status: PublicationStatus::Published,
            terms: Some(PriceTerms {
                free: false,
                price: liutong::domain::money::Money::from_minor(100 + i as i64 % 10_000),
            }),
            usage_restrictions: None,
            created_at: now + i as i64,
            updated_at: now + i as i64,
        });
    }
    let mut demands = Vec::with_capacity(s.demands);
    for i in 0..s.demands {
        demands.push(Demand {
            id: format!("dem_bench{i:08}"),
            demander_account_id: owner_id.clone(),
            demander_name: "seeder".into(),
            data_category: market.categories(),
            key_words: market.words(2, 5),
            description: Some(market.description()),
            data_type: market.data_type().into(),
            subscribe_confirm: None,
            status: PublicationStatus::Registered,
            created_at: now + i as i64,
            updated_at: now + i as i64,
        });
    }
    let registration_ids: Vec<String> = resources.iter().map(|r| r.id.clone()).collect();
    let demand_ids: Vec<String> = demands.iter().map(|d| d.id.clone()).collect();

    let started = Instant::now();
    let resources = Arc::new(Mutex::new(resources));
    let demands = Arc::new(Mutex::new(demands));
    let workers: Vec<_> = (0..s.concurrency)
        .map(|_| {
            let (store, resources, demands) =
                (store.clone(), Arc::clone(&resources), Arc::clone(&demands));
            tokio::spawn(async move {
                loop {
                    let next = resources.lock().expect("queue").pop();
                    let Some(r) = next else { break };
                    let terms = r.index_terms();
                    let inserted = store
                        .insert_resource(&r, Some(&terms))
                        .await
                        .expect("seed resource");
                    assert_eq!(inserted, ResourceInsert::Created, "seed ids are unique");
                }
                loop {
                    let next = demands.lock().expect("queue").pop();
                    let Some(d) = next else { break };
                    store.insert_demand(&d).await.expect("seed demand");
                    store
                        .publish_demand(&d.id, &d.data_type, &d.index_terms())
                        .await
                        .expect("publish demand");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("seed worker");
    }
    println!(
        "seeded {} resources and {} demands in {:.0} s",
        registration_ids.len(),
        demand_ids.len(),
        started.elapsed().as_secs_f64()
    );
    store.close().await;
    (demand_ids, registration_ids)
}

struct Figures {
    pairs: Latencies,
    query: Latencies,
    bare: Latencies,
    match_sequential: Latencies,
    match_loaded: Latencies,
    match_results_mean: f64,
}

async fn run_backend(database_url: &str, s: &Settings) -> Figures {
    let dir = tempfile::tempdir().expect("dir");
    let server = start_liutong(database_url.to_owned(), dir.path().to_path_buf());
    let client = Api {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(s.concurrency * 2)
            .build()
            .expect("client"),
        base: server.base.clone(),
    };

    // 1. registerData + publishData pairs, one provider per worker.
    let mut tokens = Vec::new();
    for w in 0..s.concurrency {
        tokens.push(client.user(&format!("prov{w}")).await);
    }
    let tokens = Arc::new(tokens);
    let registered = Arc::new(Mutex::new(Vec::new()));
    let pairs = {
        let (client, tokens, registered) =
            (client.clone(), Arc::clone(&tokens), Arc::clone(&registered));
        hammer(
            s.concurrency,
            s.seconds,
            Arc::new(move |w, n| {
                let (client, tokens, registered) =
                    (client.clone(), Arc::clone(&tokens), Arc::clone(&registered));
                Box::pin(async move {
                    let owner = format!("prov{w}");
                    let token = &tokens[w];
                    let data = client
                        .post("/registerData", Some(token), register_body(&owner, &format!("d{n}")))
                        .await;
                    let id = data["registrationID"].as_str().expect("id").to_owned();
                    client
                        .post(
                            "/publishData",
                            Some(token),
                            json!({"owner": owner, "registrationID": id, "free": false, "price": 19.99}),
                        )
                        .await;
                    registered.lock().expect("ids").push(id);
                })
            }),
        )
        .await
    };
    let ids: Arc<Vec<String>> = Arc::new(registered.lock().expect("ids").clone());

    // 2. queryPublishedData on those resources, then the bare ceiling on the same ids.
    let reader = Arc::new(client.user("reader").await);
    // Wrapping: the warm-up passes n near u64::MAX.
    let pick = |n: u64, w: usize, len: usize| {
        (n as usize).wrapping_mul(7919).wrapping_add(w * 104_729) % len
    };
    let query = {
        let (client, ids, reader) = (client.clone(), Arc::clone(&ids), Arc::clone(&reader));
        hammer(
            s.concurrency,
            s.seconds,
            Arc::new(move |w, n| {
                let (client, ids, reader) = (client.clone(), Arc::clone(&ids), Arc::clone(&reader));
                Box::pin(async move {
                    let id = &ids[pick(n, w, ids.len())];
                    let data = client
                        .get("/queryPublishedData", &reader, &[("registrationID", id)])
                        .await;
                    assert_eq!(data["publish_status"], "YES");
                })
            }),
        )
        .await
    };
    let bare_server = start_bare(database_url, &ids).await;
    let bare = {
        let (http, base, ids) = (
            client.client.clone(),
            bare_server.base.clone(),
            Arc::clone(&ids),
        );
        hammer(
            s.concurrency,
            s.seconds,
            Arc::new(move |w, n| {
                let (http, base, ids) = (http.clone(), base.clone(), Arc::clone(&ids));
                Box::pin(async move {
                    let id = &ids[pick(n, w, ids.len())];
                    let body: Value = http
                        .get(format!("{base}/item"))
                        .query(&[("id", id)])
                        .send()
                        .await
                        .expect("bare request")
                        .json()
                        .await
                        .expect("bare json");
                    assert_eq!(body["data"]["publish_status"], "YES");
                })
            }),
        )
        .await
    };
    drop(bare_server);

    // 3. queryMatchResults over a large market.
    let (demand_ids, registration_ids) = seed_market(database_url, s).await;
    // The seed wrote behind the server's back: its first match query catches the in-memory
    // index up with every seeded item (what a restart on this database does at start).
    // Timed apart, so that the latencies below are those of a server in its steady state.
    let t = Instant::now();
    client
        .get(
            "/queryMatchResults",
            &reader,
            &[("demandID", &demand_ids[0])],
        )
        .await;
    println!(
        "index catch-up of {} items (first match query after seeding): {:.1} s",
        demand_ids.len() + registration_ids.len(),
        t.elapsed().as_secs_f64()
    );
    let mut rng = StdRng::seed_from_u64(7);
    let mut samples = Vec::with_capacity(s.match_queries);
    let mut results = 0usize;
    let started = Instant::now();
    for i in 0..s.match_queries {
        let query: (&str, &str) = if i % 2 == 0 {
            (
                "demandID",
                &demand_ids[rng.random_range(0..demand_ids.len())],
            )
        } else {
            (
                "registrationID",
                &registration_ids[rng.random_range(0..registration_ids.len())],
            )
        };
        let t = Instant::now();
        let page = client.get("/queryMatchResults", &reader, &[query]).await;
        samples.push(t.elapsed());
        results += page["results"].as_array().map(Vec::len).unwrap_or(0);
    }
    let match_sequential = Latencies::new(samples, started.elapsed());
    let match_results_mean = results as f64 / s.match_queries.max(1) as f64;
    let demand_ids = Arc::new(demand_ids);
    let registration_ids = Arc::new(registration_ids);
    let match_loaded = {
        let (client, reader) = (client.clone(), Arc::clone(&reader));
        hammer(
            s.concurrency,
            s.seconds,
            Arc::new(move |w, n| {
                let (client, reader, demands, resources) = (
                    client.clone(),
                    Arc::clone(&reader),
                    Arc::clone(&demand_ids),
                    Arc::clone(&registration_ids),
                );
                Box::pin(async move {
                    let query = if n % 2 == 0 {
                        ("demandID", demands[pick(n, w, demands.len())].clone())
                    } else {
                        (
                            "registrationID",
                            resources[pick(n, w, resources.len())].clone(),
                        )
                    };
                    client
                        .get(
                            "/queryMatchResults",
                            &reader,
                            &[(query.0, query.1.as_str())],
                        )
                        .await;
                })
            }),
        )
        .await
    };
    drop(server);
    Figures {
        pairs,
        query,
        bare,
        match_sequential,
        match_loaded,
        match_results_mean,
    }
}

fn report(backend: &str, f: &Figures, s: &Settings) {
    println!();
    println!("### {backend}");
    println!();
    println!("| workload | concurrency | requests | req/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, c: usize, l: &Latencies| {
        println!(
            "| {name} | {c} | {} | {:.0} | {:.2} | {:.2} |",
            l.count(),
            l.per_second(),
            l.ms(0.5),
            l.ms(0.99)
        );
    };
    row(
        "registerData + publishData (pairs)",
        s.concurrency,
        &f.pairs,
    );
    row("queryPublishedData", s.concurrency, &f.query);
    row(
        "bare axum + sqlx single-row read (ceiling)",
        s.concurrency,
        &f.bare,
    );
    row("queryMatchResults, sequential", 1, &f.match_sequential);
    row("queryMatchResults, loaded", s.concurrency, &f.match_loaded);
    println!();
    println!(
        "queryPublishedData reaches {:.0} % of the ceiling; matching over {} resources and {} \
         demands returned {:.1} results per page on average.",
        100.0 * f.query.per_second() / f.bare.per_second(),
        s.resources,
        s.demands,
        f.match_results_mean
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let s = Settings {
        concurrency: env_u64("LIUTONG_BENCH_CONCURRENCY", 32) as usize,
        seconds: env_u64("LIUTONG_BENCH_SECONDS", 10),
        resources: env_u64("LIUTONG_BENCH_RESOURCES", 100_000) as usize,
        demands: env_u64("LIUTONG_BENCH_DEMANDS", 10_000) as usize,
        match_queries: env_u64("LIUTONG_BENCH_MATCH_QUERIES", 1_000) as usize,
    };
    sqlx::any::install_default_drivers();
    println!("load average at start: {}", load_average());
    if common::sqlite_enabled() {
        let dir = tempfile::tempdir().expect("dir");
        let url = liutong::config::sqlite_url(&dir.path().join("bench.db"));
        let figures = run_backend(&url, &s).await;
        report("SQLite", &figures, &s);
        println!("load average: {}", load_average());
    }
    if let Some(admin) = common::postgres_admin() {
        match postgres_database(&admin).await {
            Some((url, name)) => {
                let figures = run_backend(&url, &s).await;
                report("PostgreSQL", &figures, &s);
                if std::env::var("LIUTONG_BENCH_KEEP_DB").is_ok() {
                    println!("kept database {name} for inspection");
                } else {
                    drop_postgres_database(&admin, &name).await;
                }
                println!("load average: {}", load_average());
            }
            None => println!("PostgreSQL not reachable at {admin}"),
        }
    }
}
