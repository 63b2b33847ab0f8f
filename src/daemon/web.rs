//! The media side of the join page. Until browser media exists, every
//! join is refused as unavailable.

use crate::web::{JoinAsk, JoinRefused, Joined, Joiner};

/// Refuses every browser: no WebRTC media yet.
pub(super) struct NoMedia;

#[async_trait::async_trait]
impl Joiner for NoMedia {
    async fn join(&self, _ask: JoinAsk) -> Result<Joined, JoinRefused> {
        Err(JoinRefused::Unavailable(
            "browser media is not built yet".to_owned(),
        ))
    }
}
