//! The ledger: double-entry bookkeeping in integer minor units.
//!
//! Every transaction is a set of postings that sum to zero, so the sum of all entries is always
//! zero. Money enters through the system account `system:funding` (an operator's credit moves
//! it from funding to a user) and platform fees collect in `system:fees`. A user's balance can
//! never go below zero: the store debits with a conditional update, so concurrent debits of one
//! account cannot overdraw it on either database.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::money::Money;
use super::timefmt::now_millis;
use super::{AccountId, DomainError, new_id};

/// Where credited money comes from; its balance is minus everything ever credited.
pub const FUNDING_ACCOUNT: &str = "system:funding";
/// Where platform fees collect.
pub const FEES_ACCOUNT: &str = "system:fees";
/// What running compute orders hold of their users' balances (prepaid periods).
pub const COMPUTE_HOLDS_ACCOUNT: &str = "system:compute-holds";
/// No balance grows beyond this (10^15 major units), which keeps every sum far from i64
/// overflow on both databases (SQLite would silently turn an overflowing integer into a float).
pub const MAX_BALANCE: Money = Money::from_minor(100_000_000_000_000_000);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// An account holder's balance: never negative.
    User,
    /// The platform's own accounts: may go negative (funding), down to -MAX_BALANCE.
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
    pub fn floor(self) -> Money {
        match self {
            AccountKind::User => Money::ZERO,
            AccountKind::System => -MAX_BALANCE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionKind {
    Credit,
    Settlement,
    /// A metered call's hold, before its upstream is called (reference: the call).
    Hold,
    /// A metered call's charge, replacing its hold (reference: the call).
    Usage,
    /// A failed call's hold returned (reference: the call).
    Release,
    /// One paid fixed term (reference: the term's charge).
    Term,
    /// A provider settlement of a subscription (reference: the payout).
    Payout,
}

impl TransactionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionKind::Credit => "credit",
            TransactionKind::Settlement => "settlement",
            TransactionKind::Hold => "hold",
            TransactionKind::Usage => "usage",
            TransactionKind::Release => "release",
            TransactionKind::Term => "term",
            TransactionKind::Payout => "payout",
        }
    }
}

/// One leg of a transaction: + credits the account, − debits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub account: String,
    pub kind: AccountKind,
    pub amount: Money,
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
                    return Err(DomainError::Invariant(format!(
                        "ledger account {} posted with two kinds",
                        p.account
                    )));
                }
                None => merged.push(p),
            }
        }
        merged.sort_by(|a, b| a.account.cmp(&b.account));
        let sum: i128 = merged.iter().map(|p| i128::from(p.amount.minor())).sum();
        if sum != 0 {
            return Err(DomainError::Invariant(format!(
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

/// `GET /v1/account/balance` response data.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Balance {
    pub balance: f64,
    pub currency: String,
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
    /// 0, or how many of the subscription accounts differ from their charges: `system:holds`
    /// must hold the holds of the calls still running, `system:subscriptions` everything paid
    /// for subscriptions and not yet paid out.
    pub subscription_mismatches: i64,
    /// 0, or 1 when `system:compute-holds` differs from what the compute orders still running
    /// hold (prepaid periods not yet charged or returned).
    pub compute_mismatches: i64,
    pub balanced: bool,
}

/// The canonical request text stored with a credit, compared when its reference is reused.
pub fn credit_request_text(account_id: &AccountId, amount: Money) -> String {
    json!({"account": account_id, "amountMinor": amount}).to_string()
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
                    amount: Money::from_minor(-100),
                },
                Posting {
                    account: "usr_a".into(),
                    kind: AccountKind::User,
                    amount: Money::from_minor(90),
                },
                Posting {
                    account: "usr_a".into(),
                    kind: AccountKind::User,
                    amount: Money::from_minor(10),
                },
            ],
        )
        .expect("balanced");
        assert_eq!(t.postings.len(), 2);
        assert_eq!(t.postings[0].account, "usr_a");
        assert_eq!(t.postings[0].amount, Money::from_minor(100));
        assert!(
            LedgerTransaction::new(
                TransactionKind::Credit,
                "r",
                "{}".into(),
                vec![Posting {
                    account: "usr_a".into(),
                    kind: AccountKind::User,
                    amount: Money::from_minor(1),
                }],
            )
            .is_err()
        );
    }
}
