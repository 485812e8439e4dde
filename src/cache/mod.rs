//! The in-process response cache: canonical tenant-scoped keys and a byte-bounded moka store.
//!
//! A key is a SHA-256 over the tenant, the config fingerprint, the endpoint (each stores its
//! own response shape), the resolved model, whether the
//! answer is a stream, and the request body in a canonical form (object keys sorted at every
//! depth, no whitespace, without `stream`, `stream_options` and `user`), so field order and
//! formatting never cause a miss and tenants never share an entry. The config fingerprint
//! (file names and texts) changes with any reload that changes a file: answers produced
//! under the old config are not served; replicas running the same config share keys.
//!
//! The store is bounded by the total bytes of its entries (`[cache] max_bytes`) and each
//! entry expires after its tenant's TTL (moka's per-entry expiry). Identical concurrent
//! misses are collapsed: the first becomes the leader, the others wait on a `watch` channel
//! for the leader's entry (or for its failure, after which each goes upstream itself).

pub mod convert;
pub mod redis;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
#[allow(clippy::disallowed_types)]
use std::time::Instant as StdInstant;

use bytes::Bytes;
use http::HeaderValue;
use moka::sync::Cache;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::facts::Endpoint;

pub type Key = [u8; 32];

/// Request fields that do not change the answer's content.
const IGNORED_FIELDS: [&str; 3] = ["stream", "stream_options", "user"];

/// One stored answer.
#[derive(Debug)]
pub struct Entry {
    /// The client's bytes: a JSON completion, or the whole SSE stream ending with `[DONE]`.
    pub body: Bytes,
    pub stream: bool,
    /// Response headers replayed on a hit (content type, served model and tier).
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
    /// The model that produced the answer: a hit is counted as served by it.
    pub model: std::sync::Arc<str>,
    pub stored_at: Instant,
    /// What the original answer cost (nano-USD): what each hit saves.
    pub cost: crate::cost::Nanos,
    pub ttl: Duration,
}

struct PerEntryTtl;

// moka's trait names std's Instant; the value is unused here.
#[allow(clippy::disallowed_types)]
impl moka::Expiry<Key, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Arc<Entry>,
        _at: StdInstant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// What a waiter of an in-flight miss gets: the leader's entry, or `None` if it stored none.
pub type Flight = watch::Receiver<Option<Arc<Entry>>>;

pub struct ResponseCache {
    entries: Cache<Key, Arc<Entry>>,
    in_flight: Mutex<HashMap<Key, Flight>>,
}

/// Overhead counted per entry besides its body (key, headers, bookkeeping).
const ENTRY_OVERHEAD: usize = 256;

impl ResponseCache {
    pub fn new(max_bytes: u64) -> ResponseCache {
        ResponseCache {
            entries: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_k: &Key, e: &Arc<Entry>| {
                    u32::try_from(e.body.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                })
                .expire_after(PerEntryTtl)
                .build(),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        self.entries.get(key)
    }

    pub fn insert(&self, key: Key, entry: Arc<Entry>) {
        self.entries.insert(key, entry);
    }

    /// Joins the in-flight miss for `key`, or becomes its leader. The leader's `Leader`
    /// removes the flight and wakes the waiters when it is finished or dropped.
    pub fn join(self: &Arc<Self>, key: Key) -> Result<Leader, Flight> {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flight) = map.get(&key) {
            return Err(flight.clone());
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key, rx);
        Ok(Leader {
            cache: self.clone(),
            key,
            tx: Some(tx),
        })
    }

    #[cfg(test)]
    fn flights(&self) -> usize {
        self.in_flight.lock().unwrap().len()
    }
}

/// The request that goes upstream for a key; the others wait for it.
pub struct Leader {
    cache: Arc<ResponseCache>,
    key: Key,
    tx: Option<watch::Sender<Option<Arc<Entry>>>>,
}

impl Leader {
    /// Stores `entry` (when given) and hands it to the waiters.
    pub fn finish(mut self, entry: Option<Arc<Entry>>) {
        if let Some(e) = &entry {
            self.cache.insert(self.key, e.clone());
        }
        self.release(entry);
    }

    fn release(&mut self, entry: Option<Arc<Entry>>) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        self.cache
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
        // Sent even when nothing was stored, so every waiter wakes up now.
        let _ = tx.send(Some(entry).flatten());
        drop(tx);
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.release(None);
    }
}

/// Waits for the leader of `flight`: its entry, or `None` if it stored nothing.
pub async fn wait(mut flight: Flight) -> Option<Arc<Entry>> {
    loop {
        if let Some(e) = flight.borrow_and_update().clone() {
            return Some(e);
        }
        // The sender is dropped right after its one send: Err means the leader finished.
        if flight.changed().await.is_err() {
            return flight.borrow().clone();
        }
    }
}

/// The cache key of a request (see the module docs for what goes into it).
pub fn key(
    tenant: &str,
    scope: &[u8; 32],
    endpoint: Endpoint,
    model: &str,
    stream: bool,
    body: &Map<String, Value>,
) -> Key {
    let mut canonical = Vec::with_capacity(1024);
    write_object(&mut canonical, body, true);
    let mut h = Sha256::new();
    h.update(b"deliberate-cache-v1\0");
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(scope);
    // The same chat request may come from two endpoints: each answer is stored in its own
    // endpoint's shape.
    h.update(endpoint.as_str().as_bytes());
    h.update([0]);
    h.update(model.as_bytes());
    h.update([0, stream as u8, 0]);
    h.update(&canonical);
    h.finalize().into()
}

fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>, top: bool) {
    let mut keys: Vec<&String> = map
        .keys()
        .filter(|k| !(top && IGNORED_FIELDS.contains(&k.as_str())))
        .collect();
    keys.sort_unstable();
    out.push(b'{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, k);
        out.push(b':');
        write_value(out, &map[k]);
    }
    out.push(b'}');
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes deterministically; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Object(m) => write_object(out, m, false),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// True if the request asks for a reproducible answer: `temperature` 0 or a `seed`.
pub fn deterministic(body: &Map<String, Value>) -> bool {
    let zero_temperature = body
        .get("temperature")
        .and_then(Value::as_f64)
        .is_some_and(|t| t == 0.0);
    let seed = body.get("seed").is_some_and(|s| !s.is_null());
    zero_temperature || seed
}

/// The client's `Cache-Control` request directives that concern the cache.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Directives {
    /// Do not answer from the cache (the fresh answer is still stored).
    pub no_cache: bool,
    /// Neither read nor store.
    pub no_store: bool,
}

pub fn directives(headers: &http::HeaderMap) -> Directives {
    let mut d = Directives::default();
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for token in value.split(',') {
            let token = token.trim();
            if token.eq_ignore_ascii_case("no-cache") {
                d.no_cache = true;
            } else if token.eq_ignore_ascii_case("no-store") {
                d.no_store = true;
            }
        }
    }
    d
}

/// A stored stream is replayed only if it ended cleanly: `[DONE]` last, no error event.
pub fn clean_stream(bytes: &[u8]) -> bool {
    bytes.ends_with(crate::body::SSE_DONE)
        && !bytes.windows(ERROR_EVENT.len()).any(|w| w == ERROR_EVENT)
}

const ERROR_EVENT: &[u8] = b"data: {\"error\"";

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> Map<String, Value> {
        match serde_json::from_str(s).unwrap() {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn key_ignores_order_whitespace_and_transport_fields() {
        let a =
            body(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#);
        let b = body(
            r#"{ "temperature": 0, "user": "u1", "stream_options": {"include_usage": true},
                "messages": [ {"content": "hi", "role": "user"} ], "model": "m" }"#,
        );
        assert_eq!(
            key("t", &[1; 32], Endpoint::Chat, "m", false, &a),
            key("t", &[1; 32], Endpoint::Chat, "m", false, &b)
        );
        assert_ne!(
            key("t", &[1; 32], Endpoint::Chat, "m", false, &a),
            key("u", &[1; 32], Endpoint::Chat, "m", false, &a)
        );
        assert_ne!(
            key("t", &[1; 32], Endpoint::Chat, "m", false, &a),
            key("t", &[2; 32], Endpoint::Chat, "m", false, &a)
        );
        assert_ne!(
            key("t", &[1; 32], Endpoint::Chat, "m", false, &a),
            key("t", &[1; 32], Endpoint::Chat, "n", false, &a)
        );
        assert_ne!(
            key("t", &[1; 32], Endpoint::Chat, "m", false, &a),
            key("t", &[1; 32], Endpoint::Chat, "m", true, &a)
        );
        assert_ne!(
            key("t", &[1; 32], Endpoint::Chat, "m", false, &a),
            key("t", &[1; 32], Endpoint::Responses, "m", false, &a)
        );
        // Nested `user` fields are content, not the top-level end-user id.
        let c = body(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0,"x":{"user":1}}"#,
        );
        assert_ne!(
            key("t", &[1; 32], Endpoint::Chat, "m", false, &a),
            key("t", &[1; 32], Endpoint::Chat, "m", false, &c)
        );
    }

    #[test]
    fn determinism_and_directives() {
        assert!(deterministic(&body(r#"{"temperature":0}"#)));
        assert!(deterministic(&body(r#"{"temperature":0.0}"#)));
        assert!(deterministic(&body(r#"{"seed":7,"temperature":1}"#)));
        assert!(!deterministic(&body(r#"{"temperature":0.2}"#)));
        assert!(!deterministic(&body(r#"{}"#)));
        let mut h = http::HeaderMap::new();
        h.insert(
            "cache-control",
            HeaderValue::from_static("max-age=0, No-Cache"),
        );
        assert_eq!(
            directives(&h),
            Directives {
                no_cache: true,
                no_store: false
            }
        );
        assert!(clean_stream(b"data: {\"a\":1}\n\ndata: [DONE]\n\n"));
        assert!(!clean_stream(b"data: {\"a\":1}\n\n"));
        assert!(!clean_stream(b"data: {\"error\":{}}\n\ndata: [DONE]\n\n"));
    }

    #[tokio::test]
    async fn waiters_get_the_leaders_entry_or_go_themselves() {
        let cache = Arc::new(ResponseCache::new(1 << 20));
        let leader = cache.join([1; 32]).ok().unwrap();
        let waiter = cache.join([1; 32]).err().unwrap();
        let entry = Arc::new(Entry {
            body: Bytes::from_static(b"{}"),
            stream: false,
            headers: vec![],
            model: "m".into(),
            stored_at: Instant::now(),
            cost: 0,
            ttl: Duration::from_secs(60),
        });
        leader.finish(Some(entry));
        assert_eq!(&wait(waiter).await.unwrap().body[..], b"{}");
        assert!(cache.get(&[1; 32]).is_some());
        assert_eq!(cache.flights(), 0);
        let leader = cache.join([2; 32]).ok().unwrap();
        let waiter = cache.join([2; 32]).err().unwrap();
        drop(leader);
        assert!(wait(waiter).await.is_none());
        assert_eq!(cache.flights(), 0);
    }
}
