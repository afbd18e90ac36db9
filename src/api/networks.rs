//! Networks and their agents.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::json;

use aimesh_actors::ids::{AgentId, NetworkId};

use aimesh_actors::cluster::Owner;

use super::AppState;
use super::cluster::{ChosenId, Forwarded};
use super::dto::{AddAgent, CreateNetwork};
use super::error::ApiError;
use super::extract::{JsonBody, path_id};

fn known_model(s: &AppState, field: &str, model: &str) -> Result<(), ApiError> {
    if s.node.knows_model(model) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!(
                "unknown model {model:?}; use one of: {}",
                s.node.model_names().join(", ")
            ),
        ))
    }
}

/// `POST /networks`.
pub async fn create(
    State(s): State<AppState>,
    chosen: Option<Extension<ChosenId>>,
    JsonBody(body): JsonBody<CreateNetwork>,
) -> Result<impl IntoResponse, ApiError> {
    let mut new = body.validate()?;
    new.network_id = chosen.map(|Extension(ChosenId(id))| id);
    for (i, a) in new.agents.iter().flatten().enumerate() {
        known_model(&s, &format!("agents[{i}].model"), &a.model)?;
    }
    let network = s.node.create_network(new).await?;
    Ok((StatusCode::CREATED, Json(network)))
}

/// `GET /networks`.
pub async fn list(
    State(s): State<AppState>,
    forwarded: Option<Extension<Forwarded>>,
) -> Result<impl IntoResponse, ApiError> {
    let mut networks = s.node.networks().await?;
    let cluster = s.node.cluster();
    if forwarded.is_some_and(|Extension(f)| f.local_only) && cluster.shared_store() {
        // Every node reads the same store: each lists the networks it owns.
        networks.retain(|n| cluster.owner_of(n.record.network_id) == Owner::Local);
    }
    Ok(Json(json!({"total": networks.len(), "networks": networks})))
}

/// `GET /networks/{network_id}`.
pub async fn get(
    State(s): State<AppState>,
    Path(network): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id: NetworkId = path_id("network", &network)?;
    Ok(Json(s.node.network(id).await?))
}

/// `DELETE /networks/{network_id}`.
pub async fn delete(
    State(s): State<AppState>,
    Path(network): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id: NetworkId = path_id("network", &network)?;
    s.node.delete_network(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /networks/{network_id}/agents`.
pub async fn add_agent(
    State(s): State<AppState>,
    Path(network): Path<String>,
    JsonBody(body): JsonBody<AddAgent>,
) -> Result<impl IntoResponse, ApiError> {
    let id: NetworkId = path_id("network", &network)?;
    let spec = body.validate()?;
    known_model(&s, "agent_config.model", &spec.model)?;
    let agent = s.node.add_agent(id, spec).await?;
    Ok((StatusCode::CREATED, Json(agent)))
}

/// `DELETE /networks/{network_id}/agents/{agent_id}`.
pub async fn remove_agent(
    State(s): State<AppState>,
    Path((network, agent)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let id: NetworkId = path_id("network", &network)?;
    let agent: AgentId = path_id("agent", &agent)?;
    s.node.remove_agent(id, agent).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /networks/{network_id}/agents`.
pub async fn agents(
    State(s): State<AppState>,
    Path(network): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id: NetworkId = path_id("network", &network)?;
    let agents = s.node.agents(id).await?;
    Ok(Json(json!({"total": agents.len(), "agents": agents})))
}
