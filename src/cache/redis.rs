//! The shared response-cache tier: entries every replica can read, behind each replica's
//! in-process cache. Keys are `P:cache:<hex of the cache key>`: the cache key already holds
//! the tenant and the config fingerprint, so replicas share entries only for the same
//! tenant under the same config. Redis expires an entry with its TTL (`SET .. PX`).
//!
//! An entry travels as a small binary record (no serde round trip of the body):
//! `DLB2`, stream flag (u8), stored-at (unix ms, u64 LE), cost (nano-USD, u64 LE), the
//! serving model (u16 LE length + bytes), header count (u16 LE), per header: name and value
//! (u16 LE length + bytes), then the body. A record of another version is a miss.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use redis::aio::ConnectionManager;
use tokio::time::Instant;

use super::{Entry, Key};
use crate::redis::{Op, Shared};

const MAGIC: &[u8; 4] = b"DLB2";

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn redis_key(shared: &Shared, key: &Key) -> String {
    shared.key(format_args!("cache:{}", hex::encode(key)))
}

pub fn encode(entry: &Entry) -> Bytes {
    let age = entry.stored_at.elapsed().as_millis() as u64;
    let mut out = BytesMut::with_capacity(entry.body.len() + 128);
    out.put_slice(MAGIC);
    out.put_u8(u8::from(entry.stream));
    out.put_u64_le(unix_ms().saturating_sub(age));
    out.put_u64_le(entry.cost);
    let model = &entry.model.as_bytes()[..entry.model.len().min(usize::from(u16::MAX))];
    out.put_u16_le(model.len() as u16);
    out.put_slice(model);
    out.put_u16_le(entry.headers.len() as u16);
    for (name, value) in &entry.headers {
        for part in [name.as_str().as_bytes(), value.as_bytes()] {
            out.put_u16_le(part.len() as u16);
            out.put_slice(part);
        }
    }
    out.put_slice(&entry.body);
    out.freeze()
}

/// The entry in `bytes`, with what is left of `ttl`; `None` if it is not a valid record
/// (another version wrote it) or already past its TTL.
pub fn decode(bytes: Bytes, ttl: Duration) -> Option<Entry> {
    let mut at = 0usize;
    let mut take = |n: usize| {
        let slice = bytes.get(at..at + n)?;
        at += n;
        Some(slice)
    };
    if take(4)? != MAGIC {
        return None;
    }
    let stream = take(1)?[0] == 1;
    let stored_ms = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let cost = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let model_len = u16::from_le_bytes(take(2)?.try_into().ok()?);
    let model: Arc<str> = std::str::from_utf8(take(usize::from(model_len))?)
        .ok()?
        .into();
    let count = u16::from_le_bytes(take(2)?.try_into().ok()?);
    let mut headers = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let mut part = || {
            let len = u16::from_le_bytes(take(2)?.try_into().ok()?);
            take(usize::from(len))
        };
        let name = HeaderName::from_bytes(part()?).ok()?;
        let value = HeaderValue::from_bytes(part()?).ok()?;
        headers.push((name, value));
    }
    let age = Duration::from_millis(unix_ms().saturating_sub(stored_ms));
    let left = ttl.checked_sub(age).filter(|d| !d.is_zero())?;
    let now = Instant::now();
    Some(Entry {
        body: bytes.slice(at..),
        stream,
        headers,
        model,
        stored_at: now.checked_sub(age).unwrap_or(now),
        cost,
        ttl: left,
    })
}

/// Looks up `keys` (the request's own mode first) in one round trip: the first entry found,
/// with its index. `None` on a miss or when Redis did not answer (counted as a fallback).
pub async fn get(shared: &Shared, keys: [&Key; 2], ttl: Duration) -> Option<(usize, Arc<Entry>)> {
    let names = keys.map(|k| redis_key(shared, k));
    let found: Vec<Option<Vec<u8>>> = shared
        .run(Op::Cache, |mut c: ConnectionManager| async move {
            redis::cmd("MGET").arg(&names).query_async(&mut c).await
        })
        .await?;
    found.into_iter().enumerate().find_map(|(i, bytes)| {
        let entry = decode(Bytes::from(bytes?), ttl)?;
        Some((i, Arc::new(entry)))
    })
}

/// Stores `entry` under `key` for what is left of its TTL (in the background).
pub fn put(shared: &Arc<Shared>, key: &Key, entry: &Entry) {
    let ttl_ms = entry
        .ttl
        .saturating_sub(entry.stored_at.elapsed())
        .as_millis() as u64;
    if ttl_ms == 0 {
        return;
    }
    let name = redis_key(shared, key);
    let bytes = encode(entry);
    let worker = shared.clone();
    shared.spawn(async move {
        let _: Option<()> = worker
            .run(Op::Cache, |mut c: ConnectionManager| async move {
                redis::cmd("SET")
                    .arg(&name)
                    .arg(&bytes[..])
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut c)
                    .await
            })
            .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_survives_the_round_trip_with_its_age() {
        let entry = Entry {
            body: Bytes::from_static(b"data: {\"a\":1}\n\ndata: [DONE]\n\n"),
            stream: true,
            headers: vec![
                (
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                ),
                (
                    HeaderName::from_static("x-deliberate-model"),
                    HeaderValue::from_static("chat-model"),
                ),
            ],
            model: "chat-model".into(),
            stored_at: Instant::now(),
            cost: 61_500,
            ttl: Duration::from_secs(60),
        };
        let back = decode(encode(&entry), Duration::from_secs(60)).unwrap();
        assert_eq!(back.body, entry.body);
        assert!(back.stream);
        assert_eq!(back.headers, entry.headers);
        assert_eq!(&*back.model, "chat-model");
        assert_eq!(back.cost, 61_500);
        assert!(back.ttl <= Duration::from_secs(60) && back.ttl > Duration::from_secs(58));
        // Truncated or foreign records are misses, never panics.
        let bytes = encode(&entry);
        for cut in 0..40 {
            let _ = decode(bytes.slice(..cut), Duration::from_secs(60));
        }
        assert!(decode(Bytes::from_static(b"XXXX"), Duration::from_secs(60)).is_none());
    }
}
