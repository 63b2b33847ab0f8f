//! The calls in progress by call id, so the control socket can reach them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// What the control socket asks of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallCommand {
    /// CANCEL while ringing, BYE once answered.
    Hangup,
}

/// Every live call, inbound and outbound.
#[derive(Debug, Default, Clone)]
pub struct CallRegistry {
    calls: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<CallCommand>>>>,
}

/// Keeps a call listed; dropping it takes the call off the list.
pub struct Listed {
    registry: CallRegistry,
    call: String,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.call);
    }
}

impl CallRegistry {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<CallCommand>>> {
        // A poisoned lock only means a call task panicked mid-insert; the
        // map itself is intact.
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// List `call`; its commands arrive on the receiver.
    pub fn register(&self, call: &str) -> (Listed, mpsc::UnboundedReceiver<CallCommand>) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().insert(call.to_owned(), tx);
        (
            Listed {
                registry: self.clone(),
                call: call.to_owned(),
            },
            rx,
        )
    }

    /// Send `cmd` to `call`; false if there is no such call.
    pub fn send(&self, call: &str, cmd: CallCommand) -> bool {
        self.lock().get(call).is_some_and(|tx| tx.send(cmd).is_ok())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
