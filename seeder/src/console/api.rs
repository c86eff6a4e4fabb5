//! The console's HTTP routes: thin handlers that check the bearer token,
//! take a snapshot of the fleet, call the plain functions of `views` (or
//! `actions` for promote / halt / resume, with an audit entry) and answer
//! JSON; plus the embedded dashboard, the OpenAPI description and
//! `/metrics`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::audit::AuditEntry;
use super::auth::{Caller, Scope, Tokens};
use super::fleet::Sample;
use super::views::{self, DeviceQuery, ReleaseProgress};
use super::Console;

/// Every route with its method, as `/api/openapi.json` must describe them.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/whoami"),
    ("get", "/api/channels"),
    ("get", "/api/releases"),
    ("get", "/api/releases/{channel}/{release}"),
    ("post", "/api/releases/{channel}/{release}/{action}"),
    ("get", "/api/devices"),
    ("get", "/api/savings"),
    ("get", "/api/controls"),
    ("get", "/api/openapi.json"),
    ("get", "/metrics"),
];

const INDEX: &str = include_str!("../../assets/console/index.html");
const SCRIPT: &str = include_str!("../../assets/console/console.js");
const STYLE: &str = include_str!("../../assets/console/console.css");
/// The OpenAPI 3 description, written by hand.
pub const OPENAPI: &str = include_str!("../../assets/console/openapi.json");

/// The console's routes over `console`.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console.js",
            get(|| async { page("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console.css",
            get(|| async { page("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/api/openapi.json",
            get(|| async { page("application/json", OPENAPI) }),
        )
        .route("/api/whoami", get(whoami))
        .route("/api/channels", get(channels))
        .route("/api/releases", get(releases))
        .route("/api/releases/{channel}/{release}", get(release))
        .route("/api/releases/{channel}/{release}/{action}", post(action))
        .route("/api/devices", get(devices))
        .route("/api/savings", get(savings))
        .route("/api/controls", get(controls))
        .route("/metrics", get(metrics))
        .with_state(console)
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// An error answer: its status and a JSON `{"error": ...}` body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pollen\""),
            );
        }
        r
    }
}

/// The caller of a request, or 401.
fn caller(console: &Console, headers: &HeaderMap) -> Result<Caller, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(Tokens::bearer)
        .and_then(|t| console.tokens.check(t))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "a valid bearer token is needed"))
}

async fn whoami(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = caller(&c, &headers)?;
    Ok(Json(serde_json::json!({
        "name": who.name,
        "scope": who.scope,
        "can_act": who.scope == Scope::Operator && c.steerer.can_sign(),
    })))
}

async fn channels(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
) -> Result<Json<Vec<views::ChannelRow>>, ApiError> {
    caller(&c, &headers)?;
    let fleet = c.fleet();
    Ok(Json(views::channels(&fleet.releases, &fleet.records)))
}

async fn releases(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
) -> Result<Json<Vec<views::ReleaseSummary>>, ApiError> {
    caller(&c, &headers)?;
    let now = pollen_node::unix_now();
    let fleet = c.fleet();
    Ok(Json(
        fleet
            .releases
            .iter()
            .map(|e| views::summary(e, now))
            .collect(),
    ))
}

/// A release's view: its progress and its completion over time.
#[derive(Debug, Serialize)]
struct ReleaseView {
    #[serde(flatten)]
    progress: ReleaseProgress,
    series: Vec<Sample>,
}

async fn release(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Path((channel, number)): Path<(String, u64)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller(&c, &headers)?;
    let fleet = c.fleet();
    let entry = fleet
        .release(&channel, number)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such release"))?;
    let progress = views::release_progress(entry, &fleet.records, pollen_node::unix_now());
    let series = c.series(&progress.release.head.manifest_id);
    serde_json::to_value(ReleaseView { progress, series })
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn action(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Path((channel, number, name)): Path<(String, u64, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = caller(&c, &headers)?;
    let step = super::actions::step(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such action"))?;
    let now = pollen_node::unix_now();
    let mut entry = AuditEntry {
        time: now,
        who: who.name.clone(),
        action: name.clone(),
        channel: channel.clone(),
        release: number,
        result: String::new(),
        seq: None,
    };
    if who.scope != Scope::Operator {
        entry.result = "forbidden: read-only token".into();
        tracing::warn!(who = %who.name, action = %name, "console action refused: read-only token");
        audit(&c, entry).await?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this token may read, not act",
        ));
    }
    let Some(release) = c.fleet().release(&channel, number).cloned() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such release"));
    };
    let console = c.clone();
    let outcome = tokio::task::spawn_blocking(move || console.steerer.act(&release, step, now))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match outcome {
        Ok(control) => {
            entry.result = "ok".into();
            entry.seq = Some(control.seq);
            tracing::info!(who = %who.name, action = %name, %channel, release = number, seq = control.seq, "console action");
            audit(&c, entry).await?;
            c.refresh_soon();
            Ok(Json(serde_json::json!({
                "action": name,
                "by": who.name,
                "channel": channel,
                "release": number,
                "seq": control.seq,
                "halted": control.halted,
                "promoted": control.promoted,
            })))
        }
        Err(e) => {
            use super::actions::ActionError;
            let status = match &e {
                ActionError::Refused(_) | ActionError::NoKey => StatusCode::CONFLICT,
                ActionError::Deliver(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            entry.result = format!("refused: {e}");
            tracing::warn!(who = %who.name, action = %name, error = %e, "console action refused");
            audit(&c, entry).await?;
            Err(ApiError::new(status, e.to_string()))
        }
    }
}

/// Appends to the audit log (synced) before the answer goes out.
async fn audit(c: &Arc<Console>, entry: AuditEntry) -> Result<(), ApiError> {
    let console = c.clone();
    tokio::task::spawn_blocking(move || console.audit.append(entry))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn devices(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<DeviceQuery>,
) -> Result<Json<views::DevicePage>, ApiError> {
    caller(&c, &headers)?;
    let fleet = c.fleet();
    Ok(Json(views::devices(
        &fleet.records,
        &q,
        pollen_node::unix_now(),
    )))
}

async fn savings(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
) -> Result<Json<Vec<views::SiteSavings>>, ApiError> {
    caller(&c, &headers)?;
    Ok(Json(views::savings(&c.fleet().records)))
}

async fn controls(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller(&c, &headers)?;
    let fleet = c.fleet();
    let in_force: Vec<serde_json::Value> = fleet
        .releases
        .iter()
        .filter_map(|e| {
            let ctl = e.control.as_ref()?;
            let m = e.manifest.manifest();
            Some(serde_json::json!({
                "channel": m.channel,
                "release": m.release,
                "manifest_id": e.manifest.id().to_hex(),
                "seq": ctl.seq,
                "halted": ctl.halted,
                "promoted": ctl.promoted,
                "issued_at": ctl.issued_at,
            }))
        })
        .collect();
    Ok(Json(serde_json::json!({
        "in_force": in_force,
        "history": c.audit.recent(),
    })))
}

async fn metrics(State(c): State<Arc<Console>>, headers: HeaderMap) -> Result<Response, ApiError> {
    caller(&c, &headers)?;
    let fleet = c.fleet();
    let now = pollen_node::unix_now();
    let progress: Vec<ReleaseProgress> = fleet
        .releases
        .iter()
        .map(|e| views::release_progress(e, &fleet.records, now))
        .collect();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        views::metrics_text(&progress),
    )
        .into_response())
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;
