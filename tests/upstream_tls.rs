//! Provider calls over HTTPS, as every hosted provider is reached: the certificate is
//! verified against the platform's roots (here a throwaway CA given by `SSL_CERT_FILE`, which
//! the platform verifier reads on Linux), HTTP/2 is taken when the provider offers it by
//! ALPN, and an untrusted certificate is a clear upstream error that carries no key.

// The mock provider's accept loop lives as long as the test's runtime.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::net::TcpListener;

const PROVIDER_KEY: &str = "sk-provider-tls-secret";
const KEY_ENV: &str = "DELIBERATE_TLS_TEST_PROVIDER_KEY";

/// The CA the gateway trusts in this test binary: made once, and `SSL_CERT_FILE` set before
/// any gateway (and so any TLS client) exists.
fn trusted_certificates() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = certs::make_certificates();
        std::env::set_var("SSL_CERT_FILE", dir.path().join("ca.crt"));
        std::env::set_var(KEY_ENV, PROVIDER_KEY);
        dir
    })
    .path()
}

/// An OpenAI-compatible provider on TLS with the certificate in `dir`, offering `h2` and
/// `http/1.1`; its answer names the HTTP version the request came in and whether the
/// provider key arrived.
async fn tls_provider(dir: &Path) -> SocketAddr {
    deliberate::install_crypto_provider();
    let certs = CertificateDer::pem_file_iter(dir.join("server.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let version = format!("{:?}", request.version());
                        let keyed = request.headers().get("authorization").is_some_and(|v| {
                            v.as_bytes() == format!("Bearer {PROVIDER_KEY}").as_bytes()
                        });
                        let _ = request.into_body().collect().await;
                        let body = json!({
                            "id": "chatcmpl-tls", "object": "chat.completion", "created": 1,
                            "model": "chat-model",
                            "choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": format!("{version} keyed={keyed}")}}],
                            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
                        });
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body.to_string())))
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

async fn gateway_for(addr: SocketAddr) -> Gateway {
    let config = openai_config(addr, "")
        .replace(&format!("http://{addr}/v1"), &format!("https://{addr}/v1"))
        .replace(
            "kind = \"openai\"\n",
            &format!("kind = \"openai\"\napi_key_env = \"{KEY_ENV}\"\n"),
        );
    Gateway::start_acme(&config, "chat-model", "think-model").await
}

#[tokio::test]
async fn a_provider_on_https_is_verified_and_spoken_to_over_http2() {
    let provider = tls_provider(trusted_certificates()).await;
    let gw = gateway_for(provider).await;
    let response = gw
        .chat(json!({"model": "chat-model", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"], "HTTP/2.0 keyed=true",
        "{body}"
    );
}

#[tokio::test]
async fn an_untrusted_provider_certificate_is_an_upstream_error_without_the_key() {
    trusted_certificates();
    // A second CA, which the gateway does not trust.
    let untrusted = certs::make_certificates();
    let provider = tls_provider(untrusted.path()).await;
    let gw = gateway_for(provider).await;
    let response = gw
        .chat(json!({"model": "chat-model", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("upstream_unavailable"), "{text}");
    assert!(!text.contains(PROVIDER_KEY), "{text}");
}
