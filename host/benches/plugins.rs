//! Plugin benchmark: `cargo bench -p liutong --bench plugins` (release build).
//!
//! 1. Per-call cost of the `flat-fee` billing plugin — a fresh instance from its `InstancePre`
//!    plus one `charge-trade` call — with the pooling allocator and without, next to the same
//!    rule in native Rust (`FlatBilling`), in the same run.
//! 2. Settlement latency (`POST /settlement`, in-process server on SQLite) with the plugin as
//!    the default billing rule and with the native rule: two servers, trades alternating
//!    between them so that both see the same machine load.
//! 3. 1,000 concurrent plugin calls (tokio tasks on this 2-core machine): failures and wall time.
//!
//! Settings (environment): LIUTONG_BENCH_CALLS (20000 sequential calls per mode),
//! LIUTONG_BENCH_SETTLEMENTS (300 per server), LIUTONG_BENCH_CONCURRENT (1000).

use std::path::Path;
use std::time::{Duration, Instant};

use liutong::config::{Config, PluginsConfig, StorageConfig};
use liutong::domain::billing::{ChargeRequest, FlatBilling};
use liutong_plugin_runtime::billing::{ResourceKind, Trade};
use liutong_plugin_runtime::{
    Grants, LoadedPlugin, Package, PoolingMode, PublisherKey, Runtime, RuntimeConfig,
};
use serde_json::json;

mod common;
use common::{Api, env_u64, load_average};
use liutong_testkit::age::encrypt as age_encrypt;

/// Latencies of one run.
#[derive(Default)]
struct Latencies(Vec<Duration>);

impl Latencies {
    fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// The `p`-th percentile (0..=100).
    fn percentile(&mut self, p: f64) -> Duration {
        self.0.sort();
        let i = ((self.0.len().saturating_sub(1)) as f64 * p / 100.0).round() as usize;
        self.0.get(i).copied().unwrap_or_default()
    }

    fn mean(&self) -> Duration {
        let total: Duration = self.0.iter().sum();
        total / u32::try_from(self.0.len().max(1)).unwrap_or(u32::MAX)
    }
}

const OPERATOR_PASSWORD: &str = "bench-operator-1";

fn trade(n: u64) -> Trade {
    Trade {
        confirm_id: format!("cfm_{n}"),
        buyer: "carol".into(),
        seller: "alice".into(),
        resource_id: "reg_1".into(),
        data_id: "ct-2024".into(),
        resource_kind: ResourceKind::Dataset,
        data_type: "dataset".into(),
        free: false,
        price: 1999,
        currency: "CNY".into(),
        at_ms: 1_763_800_000_000,
        config: r#"{"feeBps": 250}"#.into(),
    }
}

async fn plugin_calls(plugin: &LoadedPlugin, calls: u64) -> Latencies {
    let mut lat = Latencies::default();
    for n in 0..calls {
        let t = trade(n);
        let start = Instant::now();
        let call = plugin.charge_trade(t).await.expect("call");
        lat.push(start.elapsed());
        assert_eq!(call.value.expect("charge").platform_fee, 50);
    }
    lat
}

fn native_calls(calls: u64) -> Latencies {
    let rule = FlatBilling { fee_bps: 250 };
    let mut lat = Latencies::default();
    for n in 0..calls {
        let confirm_id = format!("cfm_{n}");
        let request = ChargeRequest {
            confirm_id: &confirm_id,
            resource_id: "res_1",
            registration_id: "reg_1",
            data_id: "ct-2024",
            buyer: "carol",
            seller: "alice",
            currency: "CNY",
            list_price: liutong::domain::money::Money::from_minor(1999),
            free: false,
            controlled: false,
            data_type: "dataset",
            at_ms: 1_763_800_000_000,
        };
        let start = Instant::now();
        let charge = std::hint::black_box(rule.compute(std::hint::black_box(&request)));
        lat.push(start.elapsed());
        assert_eq!(charge.expect("charge").platform_fee.minor(), 49);
    }
    lat
}

fn load(pooling: PoolingMode, manifest: &[u8], component: &[u8]) -> (Runtime, LoadedPlugin) {
    let runtime = Runtime::new(RuntimeConfig {
        pooling,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let plugin = runtime
        .load_unsigned_for_testing(manifest, component, &Grants::none())
        .expect("load");
    (runtime, plugin)
}

/// An in-process server on its own SQLite file; `plugin_package` makes flat-fee the default
/// billing rule.
async fn server(dir: &Path, trust: &Path, package: Option<&Path>) -> String {
    let mut plugins = PluginsConfig {
        trust_dir: trust.to_owned(),
        cache_dir: dir.join("cache"),
        ..PluginsConfig::default()
    };
    if let Some(p) = package {
        plugins.preinstall = vec![p.to_owned()];
        plugins.defaults.insert(
            liutong_plugin_runtime::PluginKind::Billing,
            "flat-fee".into(),
        );
    }
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        database_url: liutong::config::sqlite_url(&dir.join("db.sqlite")),
        operator_password: Some(OPERATOR_PASSWORD.into()),
        keys_dir: dir.join("keys"),
        storage: StorageConfig {
            dir: dir.join("files"),
            s3: None,
            verify_every_delivery: false,
        },
        plugins,
        ..Config::default()
    };
    let app = liutong::App::build(config).await.expect("app");
    let base = format!("http://{}", app.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = app.serve_until(std::future::pending()).await;
    });
    base
}

/// A market ready to settle: a provider whose resources have a file and a key, a rich buyer.
struct Market {
    api: Api,
    provider: String,
    buyer: String,
    recipient: String,
    sealed_b64: String,
    ciphertext: Vec<u8>,
}

impl Market {
    async fn open(base: String) -> Market {
        use age::secrecy::ExposeSecret;
        use base64::Engine as _;
        let api = Api {
            client: reqwest::Client::new(),
            base,
        };
        let provider = api.user("alice").await;
        let buyer = api.user("carol").await;
        let operator = api.token("operator", OPERATOR_PASSWORD).await;
        api.post(
            "/v1/admin/accounts/credit",
            Some(&operator),
            json!({"username": "carol", "amount": 1_000_000, "reference": "bench"}),
        )
        .await;
        let buyer_identity = age::x25519::Identity::generate();
        api.call(
            api.client
                .put(format!("{}/v1/account/deliveryKey", api.base))
                .header("X-Auth-Token", &buyer)
                .json(&json!({"publicKey": buyer_identity.to_public().to_string()})),
        )
        .await;
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public().to_string();
        let keys = api
            .call(api.client.get(format!("{}/v1/keys", api.base)))
            .await;
        let escrow = keys["escrowRecipient"].as_str().expect("escrow").to_owned();
        let identity_file = format!(
            "# public key: {recipient}\n{}\n",
            identity.to_string().expose_secret()
        );
        Market {
            sealed_b64: base64::engine::general_purpose::STANDARD
                .encode(age_encrypt(&escrow, identity_file.as_bytes())),
            ciphertext: age_encrypt(&recipient, &[7u8; 256]),
            recipient,
            api,
            provider,
            buyer,
        }
    }

    /// Everything up to a confirmation; returns the confirmID.
    async fn confirmed(&self, n: u64) -> String {
        let api = &self.api;
        let reg = api
            .post(
                "/registerData",
                Some(&self.provider),
                json!({
                    "owner": "alice", "key_words": ["bench"], "dataID": format!("d{n}"),
                    "description": "benchmark data", "data_type": "dataset",
                    "data_format": "bin", "data_size": 1.0, "data_category": ["bench"],
                    "collection_time": "2024-05-01 08:30:00", "country": "CN",
                    "resource_url": "https://provider.invalid/d.age",
                    "ownership_confirm": "https://provider.invalid/o",
                    "public_key": self.recipient,
                }),
            )
            .await["registrationID"]
            .as_str()
            .expect("reg")
            .to_owned();
        api.post(
            "/publishData",
            Some(&self.provider),
            json!({"owner": "alice", "registrationID": reg, "free": false, "price": 19.99}),
        )
        .await;
        api.call(
            api.client
                .put(format!("{}/v1/data/file", api.base))
                .query(&[("registrationID", reg.as_str())])
                .header("X-Auth-Token", &self.provider)
                .header("Content-Type", "application/octet-stream")
                .body(self.ciphertext.clone()),
        )
        .await;
        api.call(
            api.client
                .put(format!("{}/v1/data/deliveryKey", api.base))
                .query(&[("registrationID", reg.as_str())])
                .header("X-Auth-Token", &self.provider)
                .json(&json!({"sealedIdentity": self.sealed_b64})),
        )
        .await;
        let demand = api
            .post(
                "/registerDemand",
                Some(&self.buyer),
                json!({"demander": "carol", "data_category": ["bench"], "key_words": ["bench"],
                       "data_type": "dataset"}),
            )
            .await["demandID"]
            .as_str()
            .expect("demand")
            .to_owned();
        api.post(
            "/publishDemand",
            Some(&self.buyer),
            json!({"demander": "carol", "demandID": demand}),
        )
        .await;
        api.post(
            "/confirmDemand",
            Some(&self.buyer),
            json!({"demander": "carol", "demandID": demand, "registrationID": reg}),
        )
        .await["confirmID"]
            .as_str()
            .expect("confirm")
            .to_owned()
    }

    /// One settlement; its latency and the rule that billed it.
    async fn settle(&self, confirm_id: &str) -> (Duration, String) {
        let start = Instant::now();
        let settled = self
            .api
            .post(
                "/settlement",
                Some(&self.buyer),
                json!({"confirmID": confirm_id}),
            )
            .await;
        let elapsed = start.elapsed();
        let rule = settled["payment_proof"]["billing"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (elapsed, rule)
    }
}

fn row(name: &str, lat: &mut Latencies) {
    println!(
        "| {name} | {:.1} | {:.1} | {:.1} |",
        lat.percentile(50.0).as_secs_f64() * 1e6,
        lat.percentile(99.0).as_secs_f64() * 1e6,
        lat.mean().as_secs_f64() * 1e6,
    );
}

#[tokio::main]
async fn main() {
    let calls = env_u64("LIUTONG_BENCH_CALLS", 20_000);
    let settlements = env_u64("LIUTONG_BENCH_SETTLEMENTS", 300);
    let concurrent = env_u64("LIUTONG_BENCH_CONCURRENT", 1000);
    let _ = rustls::crypto::ring::default_provider().install_default();
    println!("load average at start: {}", load_average());
    let (manifest, component) = common::guest("billing-flat-fee");

    // 1. Per-call cost.
    let (pooled_runtime, pooled) = load(PoolingMode::On, &manifest, &component);
    let (_, on_demand) = load(PoolingMode::Off, &manifest, &component);
    // Warm up both (first instantiations touch fresh memory).
    plugin_calls(&pooled, 500).await;
    plugin_calls(&on_demand, 500).await;
    let mut pooled_lat = plugin_calls(&pooled, calls).await;
    let mut on_demand_lat = plugin_calls(&on_demand, calls).await;
    let mut native_lat = native_calls(calls);
    println!("\n## Per-call cost ({calls} sequential calls each, µs)\n");
    println!("| billing rule | p50 | p99 | mean |");
    println!("|---|---|---|---|");
    row("flat-fee plugin, pooling allocator", &mut pooled_lat);
    row("flat-fee plugin, on-demand allocation", &mut on_demand_lat);
    row("native FlatBilling (same rule)", &mut native_lat);

    // 3. Concurrency: every call at once on the pooled runtime.
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrent)
        .map(|n| {
            let plugin = pooled.clone();
            tokio::spawn(async move { plugin.charge_trade(trade(n)).await })
        })
        .collect();
    let mut failures = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(call)) if call.value.is_ok() => {}
            _ => failures += 1,
        }
    }
    let wall = start.elapsed();
    println!(
        "\n## {concurrent} concurrent calls\n\nfailures: {failures}; wall time {:.1} ms ({:.0} calls/s); runtime stats {:?}",
        wall.as_secs_f64() * 1e3,
        concurrent as f64 / wall.as_secs_f64(),
        pooled_runtime.stats()
    );

    // 2. Settlement latency with and without the plugin.
    let dir = tempfile::tempdir().expect("dir");
    let trust = dir.path().join("trust");
    std::fs::create_dir_all(&trust).expect("trust dir");
    let publisher = PublisherKey::generate("bench");
    std::fs::write(trust.join("bench.pub"), publisher.public().to_json()).expect("pub");
    let package = dir.path().join("flat-fee.ltpkg");
    std::fs::write(
        &package,
        publisher
            .sign(Package::build(manifest.clone(), component.clone()))
            .to_bytes(),
    )
    .expect("package");
    let with_dir = dir.path().join("with");
    let without_dir = dir.path().join("without");
    std::fs::create_dir_all(&with_dir).expect("dir");
    std::fs::create_dir_all(&without_dir).expect("dir");
    let with_plugin = Market::open(server(&with_dir, &trust, Some(&package)).await).await;
    let native = Market::open(server(&without_dir, &trust, None).await).await;
    let mut with_lat = Latencies::default();
    let mut native_settle = Latencies::default();
    for n in 0..settlements {
        let a = with_plugin.confirmed(n).await;
        let b = native.confirmed(n).await;
        // Alternate which goes first so neither always follows the other's writes.
        let ((ta, rule_a), (tb, rule_b)) = if n % 2 == 0 {
            let x = with_plugin.settle(&a).await;
            (x, native.settle(&b).await)
        } else {
            let y = native.settle(&b).await;
            (with_plugin.settle(&a).await, y)
        };
        assert_eq!(rule_a, "plugin flat-fee@0.1.0");
        assert_eq!(rule_b, "native-flat");
        with_lat.push(ta);
        native_settle.push(tb);
    }
    println!("\n## Settlement latency ({settlements} settlements each, SQLite, µs)\n");
    println!("| billing | p50 | p99 | mean |");
    println!("|---|---|---|---|");
    row("flat-fee plugin (default rule)", &mut with_lat);
    row("native flat rule", &mut native_settle);
    let p50_gap = with_lat.percentile(50.0).as_secs_f64()
        / native_settle.percentile(50.0).as_secs_f64()
        - 1.0;
    println!("\np50 difference: {:+.1} %", p50_gap * 100.0);
    println!("load average at end: {}", load_average());
}
