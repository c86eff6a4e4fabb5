use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use pollen_core::manifest::{SecretKey, TrustPolicy, VerifyContext};
use pollen_node::store::{MemStore, Store};
use tower::ServiceExt;

use super::*;
use crate::console::{audit::AuditLog, auth::Tokens, fixture, Console};

const READ: &str = "read-token-0123456789";
const OPERATOR: &str = "operator-token-0123456789";

type Sent = Arc<Mutex<Vec<Vec<u8>>>>;

fn console() -> (Arc<Console>, Sent) {
    let store = Arc::new(MemStore::new());
    let entry = fixture::release(3);
    let key = SecretKey::from_bytes(&[7; 32]);
    let verified = pollen_core::manifest::verify(
        &entry.manifest.encode(),
        &TrustPolicy::single(key.public()),
        &VerifyContext::default(),
    )
    .expect("verifies");
    store.put_manifest(&verified).expect("manifest");
    let tokens =
        Tokens::parse(&format!("read viewer {READ}\noperator alice {OPERATOR}\n")).expect("tokens");
    let sent: Sent = Arc::default();
    let log = sent.clone();
    let console = Console::new(
        tokens,
        AuditLog::open(None).expect("audit"),
        store,
        Some(Arc::new(SecretKey::from_bytes(&[5; 32]))),
        Box::new(move |b: &[u8]| {
            log.lock().expect("lock").push(b.to_vec());
            Ok(())
        }),
    )
    .expect("console");
    (Arc::new(console), sent)
}

async fn call(
    c: &Arc<Console>,
    method: Method,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = router(c.clone())
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn openapi_describes_every_route() {
    let spec: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
    assert!(spec["openapi"].as_str().is_some_and(|v| v.starts_with('3')));
    for (method, path) in ROUTES {
        assert!(
            spec["paths"][path][method].is_object(),
            "{method} {path} missing from openapi.json"
        );
    }
    let described: usize = spec["paths"]
        .as_object()
        .map(|p| {
            p.values()
                .map(|m| m.as_object().map_or(0, |m| m.len()))
                .sum()
        })
        .unwrap_or(0);
    assert_eq!(
        described,
        ROUTES.len(),
        "openapi.json describes a route the router lacks"
    );
}

#[tokio::test]
async fn every_route_answers_and_asks_for_a_token() {
    let (c, _) = console();
    for (method, path) in ROUTES {
        if *method != "get" {
            continue;
        }
        let uri = path
            .replace("{channel}", "stable")
            .replace("{release}", "3");
        let (status, body) = call(&c, Method::GET, &uri, Some(READ)).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        if *path != "/api/openapi.json" {
            let (status, _) = call(&c, Method::GET, &uri, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} without a token");
            let (status, _) = call(&c, Method::GET, &uri, Some("wrong-token-0123456789")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} with a wrong token");
        }
    }
    let (status, _) = call(&c, Method::GET, "/api/releases/stable/9", Some(READ)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(&c, Method::GET, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("console.js"));
}

#[tokio::test]
async fn only_operator_tokens_act_and_every_attempt_is_audited() {
    let (c, sent) = console();
    let halt = "/api/releases/stable/3/halt";
    let (status, _) = call(&c, Method::POST, halt, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&c, Method::POST, halt, Some("wrong-token-0123456789")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&c, Method::POST, halt, Some(READ)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        sent.lock().expect("lock").is_empty(),
        "nothing signed or sent"
    );
    let (status, body) = call(&c, Method::POST, halt, Some(OPERATOR)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (v["halted"].as_bool(), v["by"].as_str()),
        (Some(true), Some("alice"))
    );
    assert_eq!(sent.lock().expect("lock").len(), 1);
    let (status, _) = call(&c, Method::POST, halt, Some(OPERATOR)).await;
    assert_eq!(status, StatusCode::CONFLICT, "already halted");
    let (status, _) = call(
        &c,
        Method::POST,
        "/api/releases/stable/3/delete",
        Some(OPERATOR),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let history = c.audit.recent();
    let results: Vec<(&str, &str)> = history
        .iter()
        .map(|e| (e.who.as_str(), e.result.as_str()))
        .collect();
    assert_eq!(results.len(), 3, "{results:?}");
    assert_eq!(results[2], ("viewer", "forbidden: read-only token"));
    assert_eq!(results[1], ("alice", "ok"));
    assert!(results[0].1.starts_with("refused"));
}
