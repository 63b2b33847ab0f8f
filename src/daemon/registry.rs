//! The calls in progress by our own call id, so the control socket can reach them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::call::CallId;

/// What the control socket (or a bridge's other leg) asks of a call.
#[derive(Debug)]
pub enum CallCommand {
    /// CANCEL while ringing, BYE once answered.
    Hangup,
    /// Key digits into the call; answers whether it could take them.
    Dtmf(String, tokio::sync::oneshot::Sender<bool>),
    /// Key presses of the other member of the call's bridge room, for the
    /// far end's keypad: kept until the call is in the room if need be.
    Relay(String),
}

type Calls = HashMap<CallId, mpsc::UnboundedSender<CallCommand>>;

/// Every live call, inbound and outbound.
#[derive(Debug, Default, Clone)]
pub struct CallRegistry {
    calls: Arc<Mutex<Calls>>,
}

/// Keeps a call listed; dropping it takes the call off the list.
pub struct Listed {
    registry: CallRegistry,
    call: CallId,
}

impl Listed {
    /// The call's id, minted when it was listed.
    pub fn id(&self) -> CallId {
        self.call
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.call);
    }
}

impl CallRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Calls> {
        // A poisoned lock only means a call task panicked mid-insert; the
        // map itself is intact.
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// List a new call under a fresh id; its commands arrive on the receiver.
    pub fn register(&self) -> (Listed, mpsc::UnboundedReceiver<CallCommand>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut calls = self.lock();
        let call = loop {
            let id = CallId::from_random(rand::random());
            if !calls.contains_key(&id) {
                break id;
            }
        };
        calls.insert(call, tx);
        drop(calls);
        (
            Listed {
                registry: self.clone(),
                call,
            },
            rx,
        )
    }

    /// Send `cmd` to `call`; false if there is no such call.
    pub fn send(&self, call: CallId, cmd: CallCommand) -> bool {
        self.lock()
            .get(&call)
            .is_some_and(|tx| tx.send(cmd).is_ok())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_gets_its_own_id_and_leaves_with_it() {
        let registry = CallRegistry::default();
        let listed: Vec<_> = (0..1000).map(|_| registry.register()).collect();
        let mut ids: Vec<_> = listed.iter().map(|(l, _)| l.id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 1000);
        let first = ids[0];
        assert!(registry.send(first, CallCommand::Hangup));
        drop(listed);
        assert_eq!(registry.len(), 0);
        assert!(!registry.send(first, CallCommand::Hangup));
    }
}
