//! The ledger: double-entry bookkeeping in integer minor units.
//!
//! Every transaction is a set of postings that sum to zero, so the sum of all entries is always
//! zero. Money enters through the system account `system:funding` (an operator's credit moves
//! it from funding to a user) and platform fees collect in `system:fees`. A user's balance can
//! never go below zero: the store debits with a conditional update, so concurrent debits of one
//! account cannot overdraw it on either database.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::money::{minor_to_price, price_to_minor};
use super::{Caller, DomainError, Role, new_id};
use crate::store::ledger::{LEDGER_REFERENCE_TAKEN, PostOutcome};
use crate::store::{Store, now_millis};

/// Where credited money comes from; its balance is minus everything ever credited.
pub const FUNDING_ACCOUNT: &str = "system:funding";
/// Where platform fees collect.
pub const FEES_ACCOUNT: &str = "system:fees";
/// No balance grows beyond this (10^15 major units), which keeps every sum far from i64
/// overflow on both databases (SQLite would silently turn an overflowing integer into a float).
pub const MAX_BALANCE_MINOR: i64 = 100_000_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// An account holder's balance: never negative.
    User,
    /// The platform's own accounts: may go negative (funding), down to -MAX_BALANCE_MINOR.
    System,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::User => "user",
            AccountKind::System => "system",
        }
    }

    /// The lowest balance a posting may leave.
    pub fn floor(self) -> i64 {
        match self {
            AccountKind::User => 0,
            AccountKind::System => -MAX_BALANCE_MINOR,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionKind {
    Credit,
    Settlement,
}

impl TransactionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionKind::Credit => "credit",
            TransactionKind::Settlement => "settlement",
        }
    }
}

/// One leg of a transaction: + credits the account, − debits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub account: String,
    pub kind: AccountKind,
    pub amount: i64,
}

/// A balanced set of postings, identified by (kind, reference) for idempotency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerTransaction {
    pub id: String,
    pub kind: TransactionKind,
    pub reference: String,
    /// The request that caused it (JSON), compared when the reference is reused.
    pub request: String,
    pub created_at: i64,
    pub postings: Vec<Posting>,
}

impl LedgerTransaction {
    /// Builds a transaction, merging postings to the same account and ordering them by account
    /// (the order in which rows are locked, so concurrent transactions cannot deadlock).
    pub fn new(
        kind: TransactionKind,
        reference: &str,
        request: String,
        postings: Vec<Posting>,
    ) -> Result<LedgerTransaction, DomainError> {
        let mut merged: Vec<Posting> = Vec::new();
        for p in postings {
            match merged.iter_mut().find(|m| m.account == p.account) {
                Some(m) if m.kind == p.kind => m.amount += p.amount,
                Some(_) => {
                    return Err(DomainError::Internal(format!(
                        "ledger account {} posted with two kinds",
                        p.account
                    )));
                }
                None => merged.push(p),
            }
        }
        merged.sort_by(|a, b| a.account.cmp(&b.account));
        let sum: i128 = merged.iter().map(|p| i128::from(p.amount)).sum();
        if sum != 0 {
            return Err(DomainError::Internal(format!(
                "unbalanced ledger transaction ({sum})"
            )));
        }
        Ok(LedgerTransaction {
            id: new_id("ltx_"),
            kind,
            reference: reference.to_owned(),
            request,
            created_at: now_millis(),
            postings: merged,
        })
    }
}

/// `POST /v1/admin/accounts/credit` request.
#[derive(Debug, Clone, Deserialize)]
pub struct CreditRequest {
    pub username: String,
    pub amount: f64,
    pub reference: String,
}

/// The result of a credit; the same for every repetition of the same request.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CreditReceipt {
    #[serde(rename = "transactionID")]
    pub transaction_id: String,
    pub username: String,
    pub amount: f64,
    pub reference: String,
    #[serde(rename = "createdAt")]
    pub created_at: String,
}

/// What `GET /v1/admin/ledger/audit` reports; all zero counts and `entries_sum` 0 when sound.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LedgerAudit {
    /// Sum of every entry ever posted, minor units: always 0.
    pub entries_sum: i64,
    pub transactions: i64,
    /// Transactions whose entries do not sum to zero.
    pub unbalanced_transactions: i64,
    /// Balances that differ from the sum of their account's entries.
    pub balance_mismatches: i64,
    /// User balances below zero.
    pub negative_balances: i64,
    /// Settled confirmations without exactly one settlement and ledger transaction, or the
    /// reverse: a half-done settlement.
    pub incomplete_settlements: i64,
    pub balanced: bool,
}

#[derive(Clone)]
pub struct Ledger {
    store: Store,
}

/// The canonical request text stored with a credit, compared when its reference is reused.
fn credit_request_text(account_id: &str, amount_minor: i64) -> String {
    json!({"account": account_id, "amountMinor": amount_minor}).to_string()
}

impl Ledger {
    pub fn new(store: Store) -> Self {
        Ledger { store }
    }

    /// Credits an account from the funding account. Operators only. Idempotent by
    /// `reference`: the same reference with the same username and amount returns the first
    /// result; with anything else it is a conflict.
    pub async fn credit(
        &self,
        caller: &Caller,
        req: &CreditRequest,
    ) -> Result<CreditReceipt, DomainError> {
        caller.require_role(Role::Operator)?;
        let amount = price_to_minor("/amount", req.amount)?;
        if amount == 0 {
            return Err(DomainError::invalid("/amount", "must be greater than 0"));
        }
        let account = self
            .store
            .account_by_username(&req.username)
            .await?
            .ok_or_else(|| {
                DomainError::NotFound(format!("no account with username '{}'", req.username))
            })?;
        let request = credit_request_text(&account.id, amount);
        let transaction = LedgerTransaction::new(
            TransactionKind::Credit,
            &req.reference,
            request.clone(),
            vec![
                Posting {
                    account: FUNDING_ACCOUNT.to_owned(),
                    kind: AccountKind::System,
                    amount: -amount,
                },
                Posting {
                    account: account.id.clone(),
                    kind: AccountKind::User,
                    amount,
                },
            ],
        )?;
        let receipt = |id: String, created_at: i64| CreditReceipt {
            transaction_id: id,
            username: account.username.clone(),
            amount: minor_to_price(amount),
            reference: req.reference.clone(),
            created_at: super::timefmt::to_rfc3339(super::timefmt::from_millis(created_at)),
        };
        match self.store.post_ledger_transaction(&transaction).await {
            Ok(PostOutcome::Posted) => Ok(receipt(transaction.id.clone(), transaction.created_at)),
            Ok(PostOutcome::LimitReached { .. }) => Err(DomainError::Conflict(format!(
                "crediting {} would take the balance of '{}' above the maximum",
                super::money::format_minor(amount),
                req.username
            ))),
            Err(e) if e.is_unique(LEDGER_REFERENCE_TAKEN) => {
                let existing = self
                    .store
                    .ledger_transaction_by_reference(TransactionKind::Credit, &req.reference)
                    .await?
                    .ok_or_else(|| DomainError::Internal("credit reference vanished".to_owned()))?;
                if existing.request == request {
                    Ok(receipt(existing.id, existing.created_at))
                } else {
                    Err(DomainError::Conflict(format!(
                        "reference '{}' was already used for a different credit",
                        req.reference
                    )))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The caller's balance in minor units (0 before the first credit).
    pub async fn balance(&self, caller: &Caller) -> Result<i64, DomainError> {
        Ok(self.store.ledger_balance(&caller.account_id).await?)
    }

    /// Checks the ledger's invariants. Operators only.
    pub async fn audit(&self, caller: &Caller) -> Result<LedgerAudit, DomainError> {
        caller.require_role(Role::Operator)?;
        Ok(self.store.ledger_audit().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_balance_and_merge() {
        let t = LedgerTransaction::new(
            TransactionKind::Settlement,
            "cfm_1",
            "{}".into(),
            vec![
                Posting {
                    account: "usr_b".into(),
                    kind: AccountKind::User,
                    amount: -100,
                },
                Posting {
                    account: "usr_a".into(),
                    kind: AccountKind::User,
                    amount: 90,
                },
                Posting {
                    account: "usr_a".into(),
                    kind: AccountKind::User,
                    amount: 10,
                },
            ],
        )
        .expect("balanced");
        assert_eq!(t.postings.len(), 2);
        assert_eq!(t.postings[0].account, "usr_a");
        assert_eq!(t.postings[0].amount, 100);
        assert!(
            LedgerTransaction::new(
                TransactionKind::Credit,
                "r",
                "{}".into(),
                vec![Posting {
                    account: "usr_a".into(),
                    kind: AccountKind::User,
                    amount: 1,
                }],
            )
            .is_err()
        );
    }
}
