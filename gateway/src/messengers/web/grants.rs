//! Grants on the page: revoking one, from the page's script (`POST
//! /approvals/api/grants/{id}/revoke`, JSON, `X-CSRF-Token`) or from its form without
//! JavaScript (`POST /approvals/grants/{id}/revoke`, field `csrf`). Both run the same
//! revocation: one conditional write with its `grant_revoked` audit entry (grant id, scope,
//! uses, who), so a second press finds it already revoked.

use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use super::routes::{Caller, CsrfForm, check_api_post, check_post, html_response};
use super::{Inner, page};
use crate::store::{AuditEntry, AuditKind};

/// How a revocation ended.
struct Revoked {
    status: StatusCode,
    revoked: bool,
    message: &'static str,
}

/// Revokes grant `id` on behalf of the page's actor, audited.
async fn revoke(inner: &Inner, id: i64) -> Revoked {
    let grant = match inner.store.grant(id).await {
        Ok(Some(grant)) => grant,
        Ok(None) => {
            return Revoked {
                status: StatusCode::NOT_FOUND,
                revoked: false,
                message: "No such grant.",
            };
        }
        Err(error) => {
            tracing::error!(%error, "could not read a grant");
            return Revoked {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                revoked: false,
                message: "The grant could not be read.",
            };
        }
    };
    let audit = AuditEntry::new(
        grant.agent_id.as_str(),
        AuditKind::Other("grant_revoked".to_owned()),
    )
    .request_id(grant.request_id.as_str())
    .actor(inner.actor.as_str())
    .detail(json!({"grant": id, "scope": grant.scope, "uses": grant.uses}));
    match inner
        .store
        .revoke_grant(id, inner.actor.as_str(), audit)
        .await
    {
        Ok(true) => {
            tracing::info!(grant = id, actor = %inner.actor, "grant revoked");
            Revoked {
                status: StatusCode::OK,
                revoked: true,
                message: "Revoked: the same call asks again.",
            }
        }
        Ok(false) => Revoked {
            status: StatusCode::CONFLICT,
            revoked: false,
            message: "Already revoked.",
        },
        Err(error) => {
            tracing::error!(%error, "could not revoke a grant");
            Revoked {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                revoked: false,
                message: "The grant could not be revoked.",
            }
        }
    }
}

/// `POST /approvals/api/grants/{id}/revoke`: JSON `{"revoked": bool, "message": "..."}`.
pub(super) async fn api_revoke(
    State(inner): State<Arc<Inner>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Response {
    if let Err(refusal) = check_api_post(&inner, &caller) {
        return refusal.json();
    }
    let done = revoke(&inner, id).await;
    (
        done.status,
        Json(json!({"revoked": done.revoked, "message": done.message})),
    )
        .into_response()
}

/// `POST /approvals/grants/{id}/revoke`: the page's Revoke button without JavaScript.
pub(super) async fn form_revoke(
    State(inner): State<Arc<Inner>>,
    caller: Caller,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refusal) = check_post(&inner, &caller, Some(&form.csrf)) {
        return refusal.html();
    }
    let done = revoke(&inner, id).await;
    html_response(done.status, |nonce| page::result(nonce, done.message))
}
