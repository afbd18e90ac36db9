//! What nodes say to each other. Every payload crosses ractor_cluster as bytes: MessagePack
//! (rmp-serde, with field names, so a newer node can add fields an older one ignores), inside
//! an envelope that carries the protocol version.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::behavior::Assignment;
use crate::ids::{AgentId, NetworkId, SubtaskId, TaskId};
use crate::types::{AgentSpec, MemoryItem, SubtaskOutcome};

/// The protocol version; a node refuses payloads from a newer major version.
pub const VERSION: u16 = 1;

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    v: u16,
    body: T,
}

/// Encodes `body` for the wire.
pub fn encode<T: Serialize>(body: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(&Envelope { v: VERSION, body }).unwrap_or_default()
}

/// Decodes a payload; an error names what was wrong.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    #[derive(Deserialize)]
    struct Version {
        v: u16,
    }
    let version: Version =
        rmp_serde::from_slice(bytes).map_err(|e| format!("bad envelope: {e}"))?;
    if version.v > VERSION {
        return Err(format!(
            "payload of protocol version {} from a newer aimesh (this node speaks {VERSION})",
            version.v
        ));
    }
    let env: Envelope<T> = rmp_serde::from_slice(bytes).map_err(|e| format!("bad payload: {e}"))?;
    Ok(env.body)
}

/// A node's periodic "I am here", with what it sees and how busy it is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The sender.
    pub from: String,
    /// When the sender's process started (unix ns): a change means it restarted.
    pub incarnation: u64,
    /// Counts up with each heartbeat.
    pub seq: u64,
    /// The peers the sender currently hears (its view, for quorum and failure agreement).
    pub hears: Vec<String>,
    /// Subtasks queued or running on the sender's agents.
    pub load: u32,
    /// The sender is draining: no new work goes there.
    #[serde(default)]
    pub draining: bool,
    /// The sender's build.
    pub version: String,
    /// Echo of the last heartbeat the sender got from the receiver: (its seq, when the sender
    /// got it, sender-local ns since its start) — lets the receiver measure the round trip.
    #[serde(default)]
    pub echo: Option<Echo>,
}

/// A heartbeat echo.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Echo {
    /// The echoed heartbeat's seq.
    pub seq: u64,
    /// How long the sender held it before this heartbeat went out (ns).
    pub held_ns: u64,
}

/// One-way messages between nodes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Cast {
    /// A subtask for an agent of a network owned by `owner`.
    Assign(Box<RemoteAssign>),
    /// Drop every queued and running subtask of a task.
    Cancel {
        /// The network.
        network: NetworkId,
        /// The task.
        task: TaskId,
    },
    /// From a guest agent to the network's owner.
    Report(Box<Report>),
}

/// A subtask sent to another node's guest agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RemoteAssign {
    /// The node whose coordinator owns the task (reports go there).
    pub owner: String,
    /// The agent's configuration.
    pub spec: AgentSpec,
    /// The work.
    pub work: Assignment,
}

/// What a guest agent tells the owner of its network.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Report {
    /// The agent started a subtask.
    Started {
        /// The network.
        network: NetworkId,
        /// Which subtask.
        subtask: SubtaskId,
        /// Which agent.
        agent: AgentId,
        /// Delivery number.
        attempt: u32,
        /// The node it runs on.
        node: String,
    },
    /// The agent finished a subtask.
    Finished {
        /// The network.
        network: NetworkId,
        /// Which subtask.
        subtask: SubtaskId,
        /// Which agent.
        agent: AgentId,
        /// How it ended.
        outcome: SubtaskOutcome,
    },
    /// The agent wrote to shared memory (which lives with the network's owner).
    Remember(Box<MemoryItem>),
    /// The guest host still holds these subtasks of `network` (queued or running): it renews
    /// the owner's lease on them. An owner redelivers a subtask whose lease is not renewed.
    Holding {
        /// The network.
        network: NetworkId,
        /// The node that holds them.
        node: String,
        /// Which subtasks.
        subtasks: Vec<SubtaskId>,
    },
}

/// A request to another node that wants an answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Call {
    /// Echo the bytes back (liveness and round-trip measurement).
    Ping(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Serve an HTTP request of the API as if it had arrived here.
    Http(Box<HttpRequest>),
}

/// The answer to a [`Call`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Reply {
    /// The ping's bytes.
    Pong(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The HTTP response.
    Http(Box<HttpResponse>),
    /// The call could not be served.
    Error(String),
}

/// An API request forwarded to the node that owns its network.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HttpRequest {
    /// The node it came in at.
    pub from: String,
    /// GET, POST ...
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers worth keeping (content type, accept).
    pub headers: Vec<(String, String)>,
    /// The body.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// For a new network: the id the entry node chose (so that this node owns it).
    #[serde(default)]
    pub network_id: Option<NetworkId>,
    /// Answer with this node's part only (the entry node merges the parts of a listing).
    #[serde(default)]
    pub local_only: bool,
}

/// The owner's response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers worth keeping.
    pub headers: Vec<(String, String)>,
    /// The body.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_newer_versions_are_refused() {
        let hb = Heartbeat {
            from: "n1".into(),
            incarnation: 7,
            seq: 3,
            hears: vec!["n2".into()],
            load: 4,
            draining: false,
            version: "0.1.0".into(),
            echo: Some(Echo { seq: 2, held_ns: 5 }),
        };
        let back: Heartbeat = decode(&encode(&hb)).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(back.hears, hb.hears);
        assert_eq!(back.echo.map(|e| e.seq), Some(2));
        let newer = rmp_serde::to_vec_named(&Envelope {
            v: VERSION + 1,
            body: &hb,
        })
        .unwrap_or_default();
        let refused = decode::<Heartbeat>(&newer).err().unwrap_or_default();
        assert!(refused.contains("newer aimesh"), "{refused}");
        assert!(decode::<Heartbeat>(b"\x01garbage").is_err());
    }

    #[test]
    fn an_older_peer_without_new_fields_still_decodes() {
        #[derive(Serialize)]
        struct OldHeartbeat {
            from: String,
            incarnation: u64,
            seq: u64,
            hears: Vec<String>,
            load: u32,
            version: String,
        }
        let old = OldHeartbeat {
            from: "n9".into(),
            incarnation: 1,
            seq: 1,
            hears: vec![],
            load: 0,
            version: "0.0.9".into(),
        };
        let bytes = rmp_serde::to_vec_named(&Envelope { v: 1, body: old }).unwrap_or_default();
        let hb: Heartbeat = decode(&bytes).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(!hb.draining);
        assert!(hb.echo.is_none());
    }
}
