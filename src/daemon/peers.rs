//! The cluster's other nodes for the control server: who holds a room and
//! where each node's control answers, both from the room directory.

use std::sync::Arc;

use crate::cluster::Directory;
use crate::control::{Peer, Peers};

/// The nodes as the directory has them.
pub(super) struct ClusterPeers {
    pub directory: Arc<Directory>,
    /// Our `cluster.node`, as a string for listings and events.
    pub node: String,
    /// The control token every node shares.
    pub token: String,
}

#[async_trait::async_trait]
impl Peers for ClusterPeers {
    fn node(&self) -> &str {
        &self.node
    }

    fn token(&self) -> &str {
        &self.token
    }

    async fn holder(&self, room: &str) -> Option<Peer> {
        let owner = self.directory.owner(room).await.ok()??;
        if owner == self.directory.node() {
            return None;
        }
        let control = self.directory.control_of(owner).await.ok()??;
        Some(Peer {
            node: owner.to_string(),
            control,
        })
    }

    async fn others(&self) -> Vec<Peer> {
        let here = self.directory.node();
        self.directory
            .nodes()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|(node, _)| *node != here)
            .map(|(node, control)| Peer {
                node: node.to_string(),
                control,
            })
            .collect()
    }
}
