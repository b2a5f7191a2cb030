//! The audit trail of plugin calls. Calls are recorded off the request path: a call appends
//! its row to a shared buffer, and one writer task writes the buffer in batches, so a
//! settlement never waits for its audit row. `flush` lets a reader (the operator's query) see
//! everything recorded so far.
//!
//! Only the first row of a batch wakes the writer: waking a task on another thread for every
//! call (a channel send) cost each settlement with a plugin more than the call itself on a
//! two-core machine, in context switches and the CPU taken from the settlement's own work.

use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc, oneshot};

use crate::domain::plugins::PluginCallRecord;
use crate::store::Store;

/// Calls waiting to be written; beyond this the newest are dropped (and counted) rather than
/// slowing the calls down.
const QUEUE: usize = 10_000;
const BATCH: usize = 512;
/// How long the writer gathers calls before writing them.
const LINGER: std::time::Duration = std::time::Duration::from_millis(200);

#[derive(Clone)]
pub struct AuditSink {
    pending: Arc<Mutex<Vec<PluginCallRecord>>>,
    /// Wakes the writer: the first row after a write, a full batch.
    rows: Arc<Notify>,
    /// Flush requests; the writer stops when every sink is dropped.
    flushes: mpsc::Sender<oneshot::Sender<()>>,
}

impl AuditSink {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(store: Store) -> AuditSink {
        let (flushes, flush_rx) = mpsc::channel(64);
        let sink = AuditSink {
            pending: Arc::new(Mutex::new(Vec::new())),
            rows: Arc::new(Notify::new()),
            flushes,
        };
        tokio::spawn(write_batches(
            store,
            Arc::clone(&sink.pending),
            Arc::clone(&sink.rows),
            flush_rx,
        ));
        sink
    }

    /// Queues one call; false when the queue is full and the row was dropped.
    pub fn record(&self, row: PluginCallRecord) -> bool {
        let queued = match self.pending.lock() {
            Ok(mut pending) if pending.len() < QUEUE => {
                pending.push(row);
                Some(pending.len())
            }
            _ => None,
        };
        match queued {
            Some(n) => {
                if n == 1 || n == BATCH {
                    self.rows.notify_one();
                }
                true
            }
            None => {
                tracing::warn!("plugin audit queue full; a call record was dropped");
                false
            }
        }
    }

    /// Waits until every call queued before now is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.flushes.send(done).await.is_ok() {
            let _ = wait.await;
        }
    }
}

fn take(pending: &Mutex<Vec<PluginCallRecord>>) -> Vec<PluginCallRecord> {
    pending
        .lock()
        .map(|mut p| std::mem::take(&mut *p))
        .unwrap_or_default()
}

fn batch_full(pending: &Mutex<Vec<PluginCallRecord>>) -> bool {
    pending.lock().map(|p| p.len() >= BATCH).unwrap_or(true)
}

async fn write_batches(
    store: Store,
    pending: Arc<Mutex<Vec<PluginCallRecord>>>,
    rows: Arc<Notify>,
    mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let mut waiting = Vec::new();
    let mut open = true;
    while open {
        tokio::select! {
            () = rows.notified() => {
                // Gather for a moment before writing: one write transaction per interval
                // instead of one per call keeps the audit from taking SQLite's write turn away
                // from trades. A full batch or a flush (an operator reading the trail) writes
                // at once.
                let deadline = tokio::time::Instant::now() + LINGER;
                while !batch_full(&pending) {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => break,
                        () = rows.notified() => {}
                        done = flushes.recv() => {
                            match done {
                                Some(done) => waiting.push(done),
                                None => open = false,
                            }
                            break;
                        }
                    }
                }
            }
            done = flushes.recv() => match done {
                Some(done) => waiting.push(done),
                None => open = false,
            },
        }
        let rows = take(&pending);
        for batch in rows.chunks(BATCH) {
            if let Err(e) = store.insert_plugin_calls(batch).await {
                tracing::error!(error = %e, count = batch.len(), "could not write plugin call records");
            }
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}
