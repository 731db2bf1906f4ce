//! The subscriptions this client API knows: each id and its key patterns.
//!
//! A subscription holds no position: a stream's position travels with the subscriber (the
//! SSE id it last saw), so a subscription survives everything that does not forget the
//! id. With a `DATA_DIR`, subscriptions are kept in a small checksumed log
//! (`subscriptions.wal`), made durable before `/subscribe` answers, so that after a
//! restart of the client API a subscriber reconnects with the same id and its last event
//! id. Without one they live in memory only, and a subscriber told `404` subscribes again
//! and resumes from its last event id all the same.

use crate::pattern::Pattern;
use runtime::wal::Wal;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use uuid::Uuid;

/// The log's file name inside `DATA_DIR`.
pub const STORE_FILE_NAME: &str = "subscriptions.wal";
/// Subscriptions held at most; more are refused (`429`) until some are removed.
pub const MAX_SUBSCRIPTIONS: usize = 10_000;
/// Patterns per subscription at most.
pub const MAX_PATTERNS: usize = 64;

/// One record of the subscriptions log.
#[derive(Debug, Serialize, Deserialize)]
enum StoreRecord {
    Subscribed { id: u128, patterns: Vec<String> },
    Unsubscribed { id: u128 },
}

struct Entry {
    patterns: Arc<Vec<Pattern>>,
    /// Set to true on unsubscribe: every open stream of the subscription ends.
    cancelled: watch::Sender<bool>,
}

/// What a stream needs of its subscription.
#[derive(Clone)]
pub struct SubscriptionView {
    /// The subscription's key patterns.
    pub patterns: Arc<Vec<Pattern>>,
    /// Becomes true when the subscription is removed.
    pub cancelled: watch::Receiver<bool>,
}

/// Why a subscription could not be made.
#[derive(Debug)]
pub enum SubscribeError {
    /// [`MAX_SUBSCRIPTIONS`] are held already.
    Full,
    /// The log could not be written.
    Storage(std::io::Error),
}

/// Every subscription, and the log that keeps them (if any).
pub struct Subscriptions {
    entries: Mutex<HashMap<Uuid, Entry>>,
    store: Option<Mutex<Wal>>,
}

impl Subscriptions {
    /// Subscriptions kept in memory only.
    pub fn in_memory() -> Subscriptions {
        Subscriptions {
            entries: Mutex::new(HashMap::new()),
            store: None,
        }
    }

    /// Subscriptions kept in `data_dir/subscriptions.wal`: reads back those made before
    /// and rewrites the log with just them.
    pub fn open(data_dir: &Path) -> anyhow::Result<Subscriptions> {
        let path = data_dir.join(STORE_FILE_NAME);
        let recovered = Wal::open(&path)?;
        let mut live: HashMap<u128, Vec<String>> = HashMap::new();
        for (index, record) in recovered.records.iter().enumerate() {
            match postcard::from_bytes::<StoreRecord>(record) {
                Ok(StoreRecord::Subscribed { id, patterns }) => {
                    live.insert(id, patterns);
                }
                Ok(StoreRecord::Unsubscribed { id }) => {
                    live.remove(&id);
                }
                Err(error) => anyhow::bail!(
                    "{} record {index} has a valid checksum but does not decode: {error}",
                    path.display()
                ),
            }
        }
        let mut wal = recovered.wal;
        let mut entries = HashMap::new();
        let mut records = Vec::new();
        for (id, texts) in live {
            let patterns = texts
                .iter()
                .map(|text| Pattern::parse(text))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
            records.push(encode(&StoreRecord::Subscribed {
                id,
                patterns: texts,
            }));
            entries.insert(Uuid::from_u128(id), new_entry(patterns));
        }
        wal.rewrite(records.iter().map(Vec::as_slice))?;
        tracing::info!(path = %path.display(), subscriptions = entries.len(), "subscriptions loaded");
        Ok(Subscriptions {
            entries: Mutex::new(entries),
            store: Some(Mutex::new(wal)),
        })
    }

    /// Makes a subscription to `patterns` (durable before this returns, with a log).
    /// Blocks on the disk: call it off the async runtime's threads.
    pub fn subscribe(&self, patterns: Vec<Pattern>) -> Result<Uuid, SubscribeError> {
        let id = Uuid::new_v4();
        if crate::sync::lock(&self.entries).len() >= MAX_SUBSCRIPTIONS {
            return Err(SubscribeError::Full);
        }
        self.append(&StoreRecord::Subscribed {
            id: id.as_u128(),
            patterns: patterns
                .iter()
                .map(|pattern| pattern.as_str().to_string())
                .collect(),
        })
        .map_err(SubscribeError::Storage)?;
        crate::sync::lock(&self.entries).insert(id, new_entry(patterns));
        Ok(id)
    }

    /// Removes subscription `id` and ends its open streams; false if it is unknown.
    /// Blocks on the disk like [`Subscriptions::subscribe`].
    pub fn unsubscribe(&self, id: Uuid) -> Result<bool, std::io::Error> {
        if !crate::sync::lock(&self.entries).contains_key(&id) {
            return Ok(false);
        }
        self.append(&StoreRecord::Unsubscribed { id: id.as_u128() })?;
        let removed = crate::sync::lock(&self.entries).remove(&id);
        match removed {
            Some(entry) => {
                let _ = entry.cancelled.send(true);
                Ok(true)
            }
            None => Ok(false), // removed meanwhile by a concurrent unsubscribe
        }
    }

    /// Subscription `id`, if it exists.
    pub fn get(&self, id: Uuid) -> Option<SubscriptionView> {
        crate::sync::lock(&self.entries)
            .get(&id)
            .map(|entry| SubscriptionView {
                patterns: Arc::clone(&entry.patterns),
                cancelled: entry.cancelled.subscribe(),
            })
    }

    /// Ends every open stream quietly (the service is stopping): their subscriptions stay.
    pub fn close_streams(&self) {
        for entry in crate::sync::lock(&self.entries).values_mut() {
            // Receivers of a dropped sender see the channel closed.
            entry.cancelled = watch::channel(false).0;
        }
    }

    /// How many subscriptions are held.
    pub fn len(&self) -> usize {
        crate::sync::lock(&self.entries).len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn append(&self, record: &StoreRecord) -> std::io::Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let mut wal = crate::sync::lock(store);
        wal.append(&encode(record));
        wal.sync()
    }
}

fn new_entry(patterns: Vec<Pattern>) -> Entry {
    let (cancelled, _) = watch::channel(false);
    Entry {
        patterns: Arc::new(patterns),
        cancelled,
    }
}

fn encode(record: &StoreRecord) -> Vec<u8> {
    postcard::to_allocvec(record).expect("encoding into a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(texts: &[&str]) -> Vec<Pattern> {
        texts
            .iter()
            .map(|text| Pattern::parse(text).unwrap())
            .collect()
    }

    #[test]
    fn subscriptions_survive_a_restart_and_unsubscribed_ones_do_not() {
        let directory = tempfile::tempdir().unwrap();
        let kept;
        let removed;
        {
            let subscriptions = Subscriptions::open(directory.path()).unwrap();
            kept = subscriptions
                .subscribe(patterns(&["user/*", "colour"]))
                .unwrap();
            removed = subscriptions.subscribe(patterns(&["x"])).unwrap();
            let mut stream = subscriptions.get(removed).unwrap().cancelled;
            assert!(subscriptions.unsubscribe(removed).unwrap());
            assert!(*stream.borrow_and_update(), "open streams are told to end");
            assert!(!subscriptions.unsubscribe(removed).unwrap(), "unknown now");
        }
        let reopened = Subscriptions::open(directory.path()).unwrap();
        assert_eq!(reopened.len(), 1);
        let view = reopened.get(kept).expect("kept across the restart");
        let texts: Vec<&str> = view.patterns.iter().map(Pattern::as_str).collect();
        assert_eq!(texts, ["user/*", "colour"]);
        assert!(reopened.get(removed).is_none());
    }
}
