//! Bodies for the responses hyper writes by itself when it cannot parse a request head
//! (400 for a bad request line, bad header or conflicting `Content-Length` /
//! `Transfer-Encoding`, 414, 431). hyper builds those with an empty body and offers no hook
//! (`Server::on_error` in hyper's `proto/h1/role.rs` returns only a status), so the socket
//! wrapper (`activity.rs`) hands such a response head to `with_json_body`, which returns the
//! same response with an OpenAI-shaped JSON body, and writes that instead.
//!
//! Only a head hyper wrote while no request was in progress on an HTTP/1 connection is
//! considered (nothing else is written then), and only if it says `content-length: 0`.

/// `head` rewritten with a JSON error body, or `None` if it is not one of hyper's own
/// automatic error responses.
pub fn with_json_body(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    let head_only = rest.strip_suffix("\r\n\r\n")?;
    let mut lines = head_only.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.get(..3)?.parse().ok()?;
    let (code, message) = match status {
        400 => (
            "bad_request",
            "The request could not be parsed as HTTP: check the request line, the header syntax, and that Content-Length is sent once.",
        ),
        414 => ("uri_too_long", "The request URI is too long."),
        431 => (
            "request_header_fields_too_large",
            "The request headers are too large.",
        ),
        _ => return None,
    };
    let headers: Vec<&str> = lines.collect();
    let empty = headers.iter().any(|h| {
        h.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("content-length") && value.trim() == "0"
        })
    });
    if !empty || !headers.iter().all(|h| h.contains(':')) {
        return None;
    }
    let body = serde_json::json!({
        "error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}
    })
    .to_string();
    let mut out = format!("HTTP/1.1 {status_line}\r\n");
    for h in headers.iter().filter(|h| {
        !h.split_once(':')
            .is_some_and(|(name, _)| name.eq_ignore_ascii_case("content-length"))
    }) {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    Some(out.into_bytes())
}

/// Could `first` be the start of one of hyper's automatic error heads? (A cheap test before
/// gathering a vectored write.)
pub fn may_be_error_head(first: &[u8]) -> bool {
    first.starts_with(b"HTTP/1.1 4")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_431_gets_an_openai_body_and_keeps_its_other_headers() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Fri, 04 Dec 2026 21:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(with_json_body(head).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(out.contains("date: Fri, 04 Dec 2026"));
        assert!(!out.contains("content-length: 0"));
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "request_header_fields_too_large");
        assert_eq!(json["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn anything_else_is_left_alone() {
        // A response with a body, a status hyper never sends by itself, a partial head.
        assert!(with_json_body(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 5\r\n\r\n").is_none());
        assert!(with_json_body(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(with_json_body(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n").is_none());
        assert!(with_json_body(b"0\r\n\r\n").is_none());
    }
}
