//! The other nodes of a cluster, as the control server sees them: where a
//! room lives, which nodes there are, and how to ask one of them. A command
//! for a room or a call that is not here is forwarded to the node that has
//! it, over that node's control TCP with the shared token, marked
//! `"local": true` so that it is answered there and never forwarded again.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Map, Value};

use super::client::{ClientError, ControlClient, Endpoint};

/// How long another node has to answer a forwarded command.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its `cluster.node` (SIP address), as listings and events name it.
    pub node: String,
    /// Its control TCP address.
    pub control: SocketAddr,
}

/// The cluster, for the control server.
#[async_trait::async_trait]
pub trait Peers: Send + Sync + 'static {
    /// This node's name (its `cluster.node`).
    fn node(&self) -> &str;
    /// The token the nodes share.
    fn token(&self) -> &str;
    /// The node that holds `room`, if it is another node that can be asked.
    async fn holder(&self, room: &str) -> Option<Peer>;
    /// Every other node that can be asked.
    async fn others(&self) -> Vec<Peer>;
}

/// What a node answered to a forwarded command.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Ok(Value),
    /// An error response, relayed as it came.
    Refused {
        code: String,
        message: String,
    },
    /// It could not be asked (down, too slow, wrong token).
    Unreachable(String),
}

/// Ask `peer` to run `request` (the request object without `id`) itself.
pub async fn ask(peer: &Peer, token: &str, request: &Map<String, Value>) -> Answer {
    let mut request = request.clone();
    request.insert("local".into(), Value::Bool(true));
    let endpoint = Endpoint::Tcp {
        addr: peer.control.to_string(),
        token: token.to_owned(),
    };
    let asked = async {
        let mut client = ControlClient::connect(&endpoint).await?;
        client.request(Value::Object(request)).await
    };
    match tokio::time::timeout(FORWARD_TIMEOUT, asked).await {
        Ok(Ok(result)) => Answer::Ok(result),
        // Our token refused: the nodes do not share one. Not the client's fault.
        Ok(Err(ClientError::Refused { code, message }))
            if code == "auth_failed" || code == "auth_required" =>
        {
            Answer::Unreachable(format!("node {} refused our token: {message}", peer.node))
        }
        Ok(Err(ClientError::Refused { code, message })) => Answer::Refused { code, message },
        Ok(Err(e)) => Answer::Unreachable(format!("node {}: {e}", peer.node)),
        Err(_) => Answer::Unreachable(format!(
            "node {} did not answer within {} s",
            peer.node,
            FORWARD_TIMEOUT.as_secs()
        )),
    }
}
