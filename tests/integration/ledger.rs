//! Property test of the ledger, driving the domain services directly (no HTTP, for speed) on
//! both databases: random credits (with reused references), confirmations and settlements
//! (some of them concurrent repeats). After every operation the entries sum to zero, no user
//! balance is negative, every balance equals the sum of its entries, and the balances equal
//! those of a simple model; every settlement succeeds exactly when the model says the buyer can
//! pay.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use futures_util::future::join_all;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

use liutong::crypto::{KeyRing, sealing};
use liutong::domain::accounts::Account;
use liutong::domain::billing::FlatBilling;
use liutong::domain::demand::{DemandAction, RegisterDemand};
use liutong::domain::ledger::CreditRequest;
use liutong::domain::money::Money;
use liutong::domain::supply::{PublishData, PublishDatasets, RegisterData};
use liutong::domain::timefmt::now_millis;
use liutong::domain::trading::ConfirmDemand;
use liutong::domain::{AccountId, Caller, DomainError, Role};
use liutong::services::ServiceError;
use liutong::services::demand::Demands;
use liutong::services::ledger::Ledger;
use liutong::services::supply::Supply;
use liutong::services::trading::{Trading, TradingConfig};
use liutong::store::Store;
use liutong::store::accounts::AccountInsert;
use liutong::store::delivery::{ResourceFile, SealedKey};

use crate::on_both_backends;
use crate::support::TestApp;

/// Users 0..USERS buy and sell; one more account is a data space selling controlled data.
const USERS: usize = 4;
/// Prices (minor units) of the resources user i sells, and of the controlled item.
const PRICES: [i64; USERS] = [0, 150, 999, 2500];
const CONTROLLED_PRICE: i64 = 700;
const CASES: u32 = 12;
const OPS_PER_CASE: usize = 100;

#[derive(Debug, Clone)]
enum Op {
    /// Credit `amount` minor units to a user under reference number `reference` (few numbers,
    /// so references are reused, with the same or other content).
    Credit {
        user: usize,
        amount: i64,
        reference: u8,
    },
    /// A buyer confirms the resource of `seller` (USERS: the controlled item).
    Confirm { buyer: usize, seller: usize },
    /// The buyer settles the n-th confirmation of this case (modulo their number), `repeats`
    /// times concurrently.
    Settle { confirmation: usize, repeats: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..USERS, 1i64..4000, 0u8..6).prop_map(|(user, amount, reference)| Op::Credit {
            user,
            amount,
            reference
        }),
        3 => (0..USERS, 0..=USERS).prop_map(|(buyer, seller)| Op::Confirm { buyer, seller }),
        4 => (any::<usize>(), 1usize..4).prop_map(|(confirmation, repeats)| Op::Settle {
            confirmation,
            repeats
        }),
    ]
}

struct World {
    store: Store,
    ledger: Ledger,
    trading: Trading,
    demands: Demands,
    operator: Caller,
    users: Vec<Caller>,
    /// Registration ids of the resources of each user, then the controlled item.
    resources: Vec<(String, Option<String>)>,
}

fn caller(id: &str, name: &str, role: Role) -> Caller {
    Caller {
        account_id: id.into(),
        username: name.to_owned(),
        role,
    }
}

async fn account(store: &Store, name: &str, role: Role) -> Caller {
    let id = format!("usr_{name}");
    let inserted = store
        .insert_account(&Account {
            id: id.clone().into(),
            username: name.to_owned(),
            password_hash: "unused".to_owned(),
            phone: None,
            role,
            created_at: now_millis(),
        })
        .await
        .expect("account");
    assert_eq!(inserted, AccountInsert::Created);
    caller(&id, name, role)
}

async fn world(app: &TestApp) -> World {
    let store = app.store.clone();
    let keys = Arc::new(KeyRing::ephemeral().expect("ring"));
    let trading = Trading::new(
        store.clone(),
        Arc::clone(&keys),
        Arc::new(FlatBilling { fee_bps: 300 }),
        TradingConfig {
            confirmation_ttl: Duration::from_secs(3600),
            license_term: Duration::from_secs(3600),
            currency: "CNY".to_owned(),
            fetch_resource_urls: false,
        },
    );
    let supply = Supply::new(store.clone());
    let operator = account(&store, "ops-p", Role::Operator).await;
    let mut users = Vec::new();
    let mut resources = Vec::new();
    let escrow = sealing::parse_recipient(keys.escrow_recipient()).expect("escrow");
    for (i, price) in PRICES.iter().enumerate() {
        let user = account(&store, &format!("user{i}"), Role::Enterprise).await;
        let own = age::x25519::Identity::generate();
        store
            .set_account_delivery_key(&user.account_id, &own.to_public().to_string(), now_millis())
            .await
            .expect("buyer key");
        let identity = age::x25519::Identity::generate();
        let registration = supply
            .register(
                &user,
                RegisterData {
                    owner: user.username.clone(),
                    key_words: vec!["k".into()],
                    data_id: format!("data{i}"),
                    description: "d".into(),
                    data_type: "dataset".into(),
                    data_format: "bin".into(),
                    data_size: 1.0,
                    data_category: vec!["c".into()],
                    collection_time: "2024-01-01 00:00:00".into(),
                    country: "CN".into(),
                    provider_url: None,
                    resource_url: "https://provider.invalid/x".into(),
                    ownership_confirm: "https://provider.invalid/o".into(),
                    public_key: identity.to_public().to_string(),
                    subscribe_confirm: None,
                },
            )
            .await
            .expect("register");
        supply
            .publish(
                &user,
                PublishData {
                    owner: user.username.clone(),
                    registration_id: registration.clone(),
                    free: *price == 0,
                    price: (*price > 0).then(|| Money::from_minor(*price).to_price()),
                    usage_restrictions: None,
                },
            )
            .await
            .expect("publish");
        let sealed = sealing::encrypt_to(
            &escrow,
            sealing::identity_file_text(&identity, "now").as_bytes(),
        )
        .expect("seal");
        store
            .set_resource_delivery_key(
                &registration,
                &SealedKey {
                    sealed: base64::engine::general_purpose::STANDARD.encode(sealed),
                    recipient: identity.to_public().to_string(),
                },
                now_millis(),
            )
            .await
            .expect("deposit");
        store
            .set_resource_file(&ResourceFile {
                resource_id: registration.clone(),
                object_key: format!("{registration}/up"),
                size: 1,
                sha256: "00".into(),
                blake3: None,
                uploaded_at: now_millis(),
            })
            .await
            .expect("file");
        users.push(user);
        resources.push((registration, None));
    }
    let space = account(&store, "space-p", Role::DataSpace).await;
    supply
        .publish_controlled(
            &space,
            PublishDatasets {
                owner: "trusted-data-space".into(),
                data_id: "ctl".into(),
                registration_id: "TDS-CONTROLLED".into(),
                description: None,
                protocol: "IDS".into(),
                is_open: None,
                source: None,
                key_words: vec!["k".into()],
                free: false,
                price: Some(Money::from_minor(CONTROLLED_PRICE).to_price()),
                usage_restrictions: None,
            },
        )
        .await
        .expect("controlled");
    resources.push(("TDS-CONTROLLED".into(), Some("ctl".into())));
    // The data space is credited like a seller; track it as a fifth model account.
    users.push(space);
    World {
        ledger: Ledger::new(store.clone(), "CNY".to_owned()),
        demands: Demands::new(store.clone()),
        store,
        trading,
        operator,
        users,
        resources,
    }
}

/// What the balances should be.
struct Model {
    balances: HashMap<AccountId, i64>,
    /// Per reference: (account, amount) of its first credit.
    references: HashMap<String, (AccountId, i64)>,
}

async fn check_invariants(w: &World, model: &Model) -> Result<(), TestCaseError> {
    let audit = w.store.ledger_audit().await.expect("audit");
    prop_assert!(audit.balanced, "{audit:?}");
    prop_assert_eq!(audit.entries_sum, 0);
    prop_assert_eq!(audit.negative_balances, 0);
    for user in &w.users {
        let balance = w
            .store
            .ledger_balance(user.account_id.as_str())
            .await
            .expect("balance")
            .minor();
        prop_assert!(balance >= 0);
        prop_assert_eq!(
            balance,
            model.balances.get(&user.account_id).copied().unwrap_or(0),
            "balance of {}",
            user.username
        );
    }
    Ok(())
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

async fn run_case(w: &World, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let run = RUNS.fetch_add(1, Ordering::SeqCst);
    let mut model = Model {
        balances: HashMap::new(),
        references: HashMap::new(),
    };
    for user in &w.users {
        let balance = w
            .store
            .ledger_balance(user.account_id.as_str())
            .await
            .expect("balance")
            .minor();
        model.balances.insert(user.account_id.clone(), balance);
    }
    // (confirmID, buyer index, seller index, price)
    let mut confirmations: Vec<(String, usize, usize, i64)> = Vec::new();
    for op in ops {
        match op {
            Op::Credit {
                user,
                amount,
                reference,
            } => {
                let reference = format!("run{run}-ref{reference}");
                let target = &w.users[user];
                let result = w
                    .ledger
                    .credit(
                        &w.operator,
                        &CreditRequest {
                            username: target.username.clone(),
                            amount: Money::from_minor(amount).to_price(),
                            reference: reference.clone(),
                        },
                    )
                    .await;
                match model.references.get(&reference) {
                    None => {
                        prop_assert!(result.is_ok(), "{result:?}");
                        model
                            .references
                            .insert(reference, (target.account_id.clone(), amount));
                        *model.balances.entry(target.account_id.clone()).or_default() += amount;
                    }
                    Some((account, first)) if *account == target.account_id && *first == amount => {
                        prop_assert!(result.is_ok(), "{result:?}");
                    }
                    Some(_) => {
                        prop_assert!(
                            matches!(result, Err(ServiceError::Refused(DomainError::Conflict(_)))),
                            "{result:?}"
                        );
                    }
                }
            }
            Op::Confirm { buyer, seller } => {
                let b = &w.users[buyer];
                let (registration, data_id) = &w.resources[seller];
                let demand = w
                    .demands
                    .register(
                        b,
                        RegisterDemand {
                            demander: b.username.clone(),
                            data_category: vec!["c".into()],
                            key_words: vec!["k".into()],
                            description: None,
                            data_type: "dataset".into(),
                            subscribe_confirm: None,
                        },
                    )
                    .await
                    .expect("demand");
                w.demands
                    .publish(
                        b,
                        &DemandAction {
                            demander: b.username.clone(),
                            demand_id: demand.clone(),
                        },
                    )
                    .await
                    .expect("publish demand");
                let result = w
                    .trading
                    .confirm(
                        b,
                        &ConfirmDemand {
                            demander: b.username.clone(),
                            demand_id: demand,
                            registration_id: registration.clone(),
                            data_id: data_id.clone(),
                        },
                    )
                    .await;
                if buyer == seller {
                    prop_assert!(
                        matches!(
                            result,
                            Err(ServiceError::Refused(DomainError::Forbidden(_)))
                        ),
                        "{result:?}"
                    );
                } else {
                    let view = result.expect("confirm");
                    let price = if seller == USERS {
                        CONTROLLED_PRICE
                    } else {
                        PRICES[seller]
                    };
                    confirmations.push((view.confirm_id, buyer, seller, price));
                }
            }
            Op::Settle {
                confirmation,
                repeats,
            } => {
                if confirmations.is_empty() {
                    continue;
                }
                let (id, buyer, seller, price) =
                    confirmations[confirmation % confirmations.len()].clone();
                let b = &w.users[buyer];
                let already = w.store.settlement(&id).await.expect("read").is_some();
                let results = join_all((0..repeats).map(|_| w.trading.settle(b, &id))).await;
                let affordable = model.balances.get(&b.account_id).copied().unwrap_or(0) >= price;
                if already {
                    for r in &results {
                        prop_assert!(r.is_ok(), "{r:?}");
                    }
                } else if affordable {
                    let first = results[0].as_ref().expect("settles").clone();
                    for r in &results {
                        prop_assert_eq!(r.as_ref().expect("settles"), &first);
                    }
                    let fee = price * 300 / 10_000;
                    *model.balances.entry(b.account_id.clone()).or_default() -= price;
                    *model
                        .balances
                        .entry(w.users[seller].account_id.clone())
                        .or_default() += price - fee;
                } else {
                    for r in &results {
                        prop_assert!(
                            matches!(
                                r,
                                Err(ServiceError::Refused(DomainError::InsufficientFunds(_)))
                            ),
                            "{r:?}"
                        );
                    }
                }
            }
        }
        check_invariants(w, &model).await?;
    }
    Ok(())
}

async fn ledger_invariants_hold_under_random_trades(app: TestApp) {
    let w = world(&app).await;
    let mut runner = TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = proptest::collection::vec(op(), OPS_PER_CASE);
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |ops| handle.block_on(run_case(&w, ops)))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // At least CASES × OPS_PER_CASE random operations ran.
    assert!(RUNS.load(Ordering::SeqCst) >= CASES as usize);
}

/// Each posting is one conditional statement (an upsert that opens the account, or an update
/// when the amount alone would cross a limit): a posting that would cross an account's floor or
/// the maximum writes nothing, whether the account exists or not.
async fn postings_stop_at_each_accounts_limits(app: TestApp) {
    use liutong::domain::ledger::{
        AccountKind, FUNDING_ACCOUNT, LedgerTransaction, MAX_BALANCE, Posting, TransactionKind,
    };
    use liutong::store::ledger::PostOutcome;
    type Account = (&'static str, AccountKind);
    let store = &app.store;
    let posting = |(account, kind): Account, minor: i64| Posting {
        account: account.to_owned(),
        kind,
        amount: Money::from_minor(minor),
    };
    // Posts `minor` from one account to another, on its own.
    let transfer = |reference: &'static str, from: Account, to: Account, minor: i64| async move {
        let t = LedgerTransaction::new(
            TransactionKind::Credit,
            reference,
            "{}".to_owned(),
            vec![posting(from, -minor), posting(to, minor)],
        )
        .expect("balanced");
        store.post_ledger_transaction(&t).await.expect("post")
    };
    let refused = |account: &str| PostOutcome::LimitReached {
        account: account.to_owned(),
    };
    let balance = |account: &'static str| async move {
        store
            .ledger_balance(account)
            .await
            .expect("balance")
            .minor()
    };
    let funding = (FUNDING_ACCOUNT, AccountKind::System);
    let user = |name: &'static str| (name, AccountKind::User);
    let max = MAX_BALANCE.minor();

    // A debit from an account never posted to: refused, and no account is opened for it.
    let outcome = transfer("t1", user("user:alice"), user("user:bob"), 1).await;
    assert_eq!(outcome, refused("user:alice"));
    // The first credit opens the account at the amount.
    let outcome = transfer("t2", funding, user("user:alice"), 100).await;
    assert_eq!(outcome, PostOutcome::Posted);
    assert_eq!(
        (balance("user:alice").await, balance(FUNDING_ACCOUNT).await),
        (100, -100)
    );
    // Above the maximum on an existing account: refused by the upsert's condition (from an
    // account with room, so that Alice's posting is the one refused). Nothing of it stays:
    // the reserve's new account goes with the rollback.
    let reserve = ("system:reserve", AccountKind::System);
    let outcome = transfer("t3", reserve, user("user:alice"), max - 100 + 1).await;
    assert_eq!(outcome, refused("user:alice"));
    assert_eq!(
        (balance("user:alice").await, balance("system:reserve").await),
        (100, 0)
    );
    // Up to the maximum exactly, then a debit to zero.
    let outcome = transfer("t4", funding, user("user:alice"), max - 100).await;
    assert_eq!(outcome, PostOutcome::Posted);
    let outcome = transfer("t5", user("user:alice"), user("user:bob"), max).await;
    assert_eq!(outcome, PostOutcome::Posted);
    assert_eq!(
        (balance("user:alice").await, balance("user:bob").await),
        (0, max)
    );
    // A new account opens with a transfer from a full one.
    let outcome = transfer("t6", user("user:bob"), user("user:carol"), 1).await;
    assert_eq!(outcome, PostOutcome::Posted);
    assert_eq!(balance("user:carol").await, 1);
    // A new account cannot open above the maximum ("a:dave" sorts first, so its posting is
    // the one tried).
    let outcome = transfer("t7", user("user:bob"), user("a:dave"), max + 1).await;
    assert_eq!(outcome, refused("a:dave"));
    assert_eq!(balance("a:dave").await, 0);

    let audit = store.ledger_audit().await.expect("audit");
    assert_eq!(audit.transactions, 4, "{audit:?}");
    assert_eq!(
        (
            audit.entries_sum,
            audit.unbalanced_transactions,
            audit.balance_mismatches,
            audit.negative_balances
        ),
        (0, 0, 0, 0),
        "{audit:?}"
    );
}

on_both_backends!(
    ledger_invariants_hold_under_random_trades,
    postings_stop_at_each_accounts_limits
);
