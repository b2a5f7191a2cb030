//! Money in and out of accounts: operator credits, balances and the ledger audit. (Settlements
//! post their ledger transactions inside the settlement's own database transaction.)

use super::ServiceError;
use crate::domain::ledger::{
    AccountKind, Balance, CreditReceipt, CreditRequest, FUNDING_ACCOUNT, LedgerAudit,
    LedgerTransaction, Posting, TransactionKind, credit_request_text,
};
use crate::domain::money::Money;
use crate::domain::timefmt::{from_millis, to_rfc3339};
use crate::domain::{Caller, DomainError, Role};
use crate::store::Store;
use crate::store::ledger::PostOutcome;

#[derive(Clone)]
pub struct Ledger {
    store: Store,
    currency: String,
}

impl Ledger {
    pub fn new(store: Store, currency: String) -> Self {
        Ledger { store, currency }
    }

    /// Credits an account from the funding account. Operators only. Idempotent by
    /// `reference`: the same reference with the same username and amount returns the first
    /// result; with anything else it is a conflict.
    pub async fn credit(
        &self,
        caller: &Caller,
        req: &CreditRequest,
    ) -> Result<CreditReceipt, ServiceError> {
        caller.require_role(Role::Operator)?;
        // The schema keeps the amount above 0 with at most 2 decimal places.
        let amount = Money::from_price("/amount", req.amount)?;
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
                    account: account.id.to_string(),
                    kind: AccountKind::User,
                    amount,
                },
            ],
        )?;
        let receipt = |id: String, created_at: i64| CreditReceipt {
            transaction_id: id,
            username: account.username.clone(),
            amount: amount.to_price(),
            reference: req.reference.clone(),
            created_at: to_rfc3339(from_millis(created_at)),
        };
        match self.store.post_ledger_transaction(&transaction).await? {
            PostOutcome::Posted => Ok(receipt(transaction.id.clone(), transaction.created_at)),
            PostOutcome::LimitReached { .. } => Err(DomainError::Conflict(format!(
                "crediting {} would take the balance of '{}' above the maximum",
                amount, req.username
            ))
            .into()),
            PostOutcome::ReferenceTaken => {
                let existing = self
                    .store
                    .ledger_transaction_by_reference(TransactionKind::Credit, &req.reference)
                    .await?
                    .ok_or_else(|| {
                        ServiceError::Internal("credit reference vanished".to_owned())
                    })?;
                if existing.request == request {
                    Ok(receipt(existing.id, existing.created_at))
                } else {
                    Err(DomainError::Conflict(format!(
                        "reference '{}' was already used for a different credit",
                        req.reference
                    ))
                    .into())
                }
            }
        }
    }

    /// The caller's balance (0 before the first credit).
    pub async fn balance(&self, caller: &Caller) -> Result<Balance, ServiceError> {
        let minor = self
            .store
            .ledger_balance(caller.account_id.as_str())
            .await?;
        Ok(Balance {
            balance: minor.to_price(),
            currency: self.currency.clone(),
        })
    }

    /// Checks the ledger's invariants. Operators only.
    pub async fn audit(&self, caller: &Caller) -> Result<LedgerAudit, ServiceError> {
        caller.require_role(Role::Operator)?;
        Ok(self.store.ledger_audit().await?)
    }
}
