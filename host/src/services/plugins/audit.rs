//! The audit trail of plugin calls. Calls are recorded off the request path: a bounded
//! channel feeds one writer task that appends them in batches, so a settlement never waits for
//! its audit row. `flush` lets a reader (the operator's query) see everything recorded so far.

use tokio::sync::{mpsc, oneshot};

use crate::domain::plugins::PluginCallRecord;
use crate::store::Store;

/// Calls waiting to be written; beyond this the newest are dropped (and counted) rather than
/// slowing the calls down.
const QUEUE: usize = 10_000;
const BATCH: usize = 512;
/// How long the writer gathers calls before writing them.
const LINGER: std::time::Duration = std::time::Duration::from_millis(200);

enum Message {
    Call(Box<PluginCallRecord>),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Message>,
}

impl AuditSink {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(store: Store) -> AuditSink {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, rx));
        AuditSink { tx }
    }

    /// Queues one call; false when the queue is full and the row was dropped.
    pub fn record(&self, row: PluginCallRecord) -> bool {
        match self.tx.try_send(Message::Call(Box::new(row))) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "plugin audit queue full; a call record was dropped");
                false
            }
        }
    }

    /// Waits until every call queued before now is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_batches(store: Store, mut rx: mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        // Gather for a moment before writing: one write transaction per interval instead of
        // one per call keeps the audit from taking SQLite's write turn away from trades. A
        // flush (an operator reading the trail) writes at once.
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut next = Some(first);
        loop {
            match next.take() {
                Some(Message::Call(row)) => batch.push(*row),
                Some(Message::Flush(done)) => waiting.push(done),
                None => {}
            }
            if batch.len() >= BATCH || !waiting.is_empty() {
                break;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(message)) => next = Some(message),
                Ok(None) | Err(_) => break,
            }
        }
        if let Err(e) = store.insert_plugin_calls(&batch).await {
            tracing::error!(error = %e, count = batch.len(), "could not write plugin call records");
        }
        batch.clear();
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}
