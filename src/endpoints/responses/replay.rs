//! A stored Responses answer replayed from the cache gets a fresh response id.
//!
//! Why: a client keys what it gets by the response id (logs, traces, its own store), and
//! two answers sharing one id would be taken for the same response. The item ids
//! (`msg_…`, `fc_…`, `rs_…`) are derived from the response id (`Echo::item_id`), so one
//! same-length replacement of the id's hex part renews them all, in a JSON answer and in
//! every event of a stream alike. Everything else replays as stored; `created_at` stays the
//! time the answer was made (the `age` header says how old it is).
//!
//! Fails open: bytes whose id cannot be found are replayed unchanged.

use bytes::Bytes;
use serde_json::Value;

/// Length of the id's hex part (`resp_` + a simple UUID).
const HEX_LEN: usize = 32;

/// The hex part of the stored answer's response id: from the JSON answer's `id`, or from the
/// `response.id` of a stream's first event (`response.created`).
fn stored_hex(stream: bool, stored: &[u8]) -> Option<String> {
    let response: Value = if stream {
        let start = find(stored, b"data: ")?.saturating_add(6);
        let rest = &stored[start..];
        let end = rest.iter().position(|b| *b == b'\n')?;
        let event: Value = serde_json::from_slice(&rest[..end]).ok()?;
        event.get("response")?.clone()
    } else {
        serde_json::from_slice(stored).ok()?
    };
    let hex = response.get("id")?.as_str()?.strip_prefix("resp_")?;
    (hex.len() == HEX_LEN && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_string())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `stored` with its response id (and the item ids made from it) replaced by a new one.
pub fn with_fresh_id(stream: bool, stored: &Bytes) -> Bytes {
    let Some(old) = stored_hex(stream, stored) else {
        return stored.clone();
    };
    let new = uuid::Uuid::new_v4().simple().to_string();
    let (old, new) = (old.as_bytes(), new.as_bytes());
    let mut out = stored.to_vec();
    let mut i: usize = 0;
    while i.saturating_add(HEX_LEN) <= out.len() {
        if &out[i..i + HEX_LEN] == old {
            out[i..i + HEX_LEN].copy_from_slice(new);
            i += HEX_LEN;
        } else {
            i += 1;
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HEX: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_json_answer_gets_a_new_response_id_and_item_ids() {
        let stored = json!({"id": format!("resp_{HEX}"), "object": "response",
            "output": [{"id": format!("msg_{HEX}_0"), "type": "message"}]});
        let stored = Bytes::from(serde_json::to_vec(&stored).unwrap());
        let replay: Value = serde_json::from_slice(&with_fresh_id(false, &stored)).unwrap();
        let id = replay["id"].as_str().unwrap();
        assert!(id.starts_with("resp_") && id.len() == 5 + HEX_LEN, "{id}");
        assert_ne!(id, format!("resp_{HEX}"));
        let hex = &id[5..];
        assert_eq!(replay["output"][0]["id"], format!("msg_{hex}_0"));
        let again: Value = serde_json::from_slice(&with_fresh_id(false, &stored)).unwrap();
        assert_ne!(again["id"], replay["id"]);
    }

    #[test]
    fn every_event_of_a_stream_gets_the_same_new_id() {
        let created =
            json!({"type": "response.created", "response": {"id": format!("resp_{HEX}")}});
        let delta =
            json!({"type": "response.output_text.delta", "item_id": format!("msg_{HEX}_0")});
        let stored = format!(
            "event: response.created\ndata: {created}\n\nevent: response.output_text.delta\ndata: {delta}\n\n"
        );
        let replay = with_fresh_id(true, &Bytes::from(stored.clone()));
        let replay = std::str::from_utf8(&replay).unwrap();
        assert!(!replay.contains(HEX), "{replay}");
        let hex = &replay[replay.find("resp_").unwrap() + 5..][..HEX_LEN];
        assert_eq!(replay.replace(hex, HEX), stored);
    }

    #[test]
    fn bytes_without_an_id_replay_unchanged() {
        for (stream, stored) in [
            (false, &b"not json"[..]),
            (false, br#"{"id": "resp_short"}"#),
            (true, b"event: x\ndata: {}\n\n"),
            (true, b""),
        ] {
            let stored = Bytes::from_static(stored);
            assert_eq!(with_fresh_id(stream, &stored), stored);
        }
    }
}
