//! In-dialog requests in CSeq order.
//!
//! rsipstack hands every transaction to us as it arrives; each dialog's
//! `handle()` then checks the CSeq against the highest one it has handled and
//! drops older requests without any answer. Handled on tasks of their own,
//! five INFOs that a phone sends within a millisecond (CSeq n … n+4) race, the
//! later ones win, and the earlier digits vanish.
//!
//! So each dialog gets one queue, served by one task: requests are handled
//! one after the other in the order they arrived (RFC 3261 §12.2.2), each to
//! its final answer before the next starts. A re-INVITE is the exception:
//! once answered the stack waits for its ACK (up to 64·T1), so it is taken
//! in order — its CSeq checked and the call told, which the stack does
//! before its first wait — and then finishes on a task of its own, so a BYE
//! behind it is not held up. A request whose CSeq is lower than one already
//! handled is out of order for real and is answered
//! `500 Server Internal Error` with `Retry-After`, as §12.2.2 allows, never
//! silence. A retransmission of an answered request never reaches us: the
//! transaction layer answers it again from its cache. A request for a dialog
//! that has ended gets 481, and the queue of an ended dialog goes with it.
//!
//! A phone takes the call as answered on our 200 OK and may send its first
//! INFO before its ACK reaches us; the stack does not handle such a request
//! until the ACK has confirmed the dialog. So it is held, with anything
//! after it, and queued in arrival order once the dialog is confirmed — or
//! answered 481 if the dialog ends without an ACK.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use rsipstack::dialog::dialog::DialogState;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::dialog::DialogId;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use tokio::sync::mpsc;
use tracing::debug;

/// Seconds a caller is asked to wait before trying an out-of-order request again.
const RETRY_AFTER_SECS: &str = "1";

/// One queue per live dialog, and the requests held until a dialog is confirmed.
#[derive(Clone, Default)]
pub(super) struct DialogQueues {
    inner: Arc<Mutex<Queues>>,
}

#[derive(Default)]
struct Queues {
    serving: HashMap<DialogId, mpsc::UnboundedSender<Transaction>>,
    /// Requests that came before the ACK, oldest first.
    held: HashMap<DialogId, (InviteDialog, Vec<Transaction>)>,
}

impl DialogQueues {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        // A poisoned lock only means a task panicked mid-insert; the maps are intact.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `tx` for `dialog`, starting the dialog's server task on its
    /// first request. Before the dialog is confirmed `tx` is held instead
    /// (BYE, CANCEL and PRACK are the stack's to take at any time).
    pub(super) fn push(&self, dialog: InviteDialog, tx: Transaction) {
        let id = dialog.id();
        let mut queues = self.lock();
        let anytime = matches!(
            tx.original.method,
            Method::Bye | Method::Cancel | Method::PRack
        );
        if !anytime {
            if let Some((_, held)) = queues.held.get_mut(&id) {
                held.push(tx);
                return;
            }
            // The state is read under the lock that `confirmed` takes, so a
            // request is never held after its dialog's requests were released.
            if awaits_ack(&dialog.state()) {
                queues.held.insert(id, (dialog, vec![tx]));
                return;
            }
        }
        self.serve(&mut queues, dialog, tx);
    }

    /// The ACK confirmed `id`: what was held is queued, in arrival order.
    pub(super) fn confirmed(&self, id: &DialogId) {
        let mut queues = self.lock();
        if let Some((dialog, held)) = queues.held.remove(id) {
            for tx in held {
                self.serve(&mut queues, dialog.clone(), tx);
            }
        }
    }

    /// The dialog ended: its task finishes what is queued and stops, and
    /// what was held for an ACK that never came gets 481.
    pub(super) fn close(&self, id: &DialogId) {
        let mut queues = self.lock();
        queues.serving.remove(id);
        if let Some((_, held)) = queues.held.remove(id) {
            drop(queues);
            tokio::spawn(async move {
                for mut tx in held {
                    tx.reply(StatusCode::CallTransactionDoesNotExist).await.ok();
                }
            });
        }
    }

    /// Dialogs with a queue or held requests (for tests of what is left
    /// after calls end).
    pub(super) fn len(&self) -> usize {
        let queues = self.lock();
        queues.serving.len()
            + queues
                .held
                .keys()
                .filter(|id| !queues.serving.contains_key(id))
                .count()
    }

    /// Hand `tx` to the dialog's server task, starting it if need be.
    fn serve(&self, queues: &mut Queues, dialog: InviteDialog, tx: Transaction) {
        let id = dialog.id();
        let mut tx = match queues.serving.get(&id) {
            Some(queue) => match queue.send(tx) {
                Ok(()) => return,
                Err(refused) => refused.0,
            },
            None => tx,
        };
        // Its queue was closed, or is never to be opened: the dialog is over.
        if ended(&dialog) {
            tokio::spawn(async move { tx.reply(StatusCode::CallTransactionDoesNotExist).await });
            return;
        }
        let (queue, requests) = mpsc::unbounded_channel();
        // The receiver is alive: it was made on the line above.
        queue.send(tx).ok();
        queues.serving.insert(id, queue);
        tokio::spawn(serve(dialog, requests, self.clone()));
    }
}

/// Whether a request with `cseq` comes after everything handled so far.
/// CANCEL and ACK carry the CSeq number of the INVITE they refer to.
pub(super) fn in_order(method: &Method, cseq: u32, highest: Option<u32>) -> bool {
    matches!(method, Method::Cancel | Method::Ack) || highest.is_none_or(|h| cseq >= h)
}

fn ended(dialog: &InviteDialog) -> bool {
    matches!(dialog.state(), DialogState::Terminated(..))
}

/// Answered with 200 OK, and the ACK not here yet.
fn awaits_ack(state: &DialogState) -> bool {
    matches!(state, DialogState::WaitAck(..))
}

async fn serve(
    dialog: InviteDialog,
    mut requests: mpsc::UnboundedReceiver<Transaction>,
    queues: DialogQueues,
) {
    // The dialog has already handled its INVITE (and, for an outbound call, nothing of theirs).
    let mut highest = Some(dialog.snapshot().remote_cseq).filter(|&c| c > 0);
    while let Some(mut tx) = requests.recv().await {
        if ended(&dialog) {
            tx.reply(StatusCode::CallTransactionDoesNotExist).await.ok();
            continue;
        }
        let Some(cseq) = tx.original.cseq_header().ok().and_then(|c| c.seq().ok()) else {
            tx.reply(StatusCode::BadRequest).await.ok();
            continue;
        };
        if !in_order(&tx.original.method, cseq, highest) {
            debug!(cseq, ?highest, method = %tx.original.method, "request out of CSeq order");
            let retry = vec![Header::RetryAfter(RETRY_AFTER_SECS.into())];
            tx.reply_with(StatusCode::ServerInternalError, retry, None)
                .await
                .ok();
            continue;
        }
        if !matches!(tx.original.method, Method::Cancel | Method::Ack) {
            highest = Some(cseq);
        }
        handle(&dialog, tx).await;
        if ended(&dialog) {
            // Whatever is still queued is answered 481 above.
            queues.close(&dialog.id());
        }
    }
}

/// Hand `tx` to the dialog. A re-INVITE is polled once here, which runs
/// the stack's CSeq check and tells the call in this request's turn, and
/// then waits for its ACK on a task of its own.
async fn handle(dialog: &InviteDialog, mut tx: Transaction) {
    let reinvite = tx.original.method == Method::Invite;
    let mut dialog = dialog.clone();
    let work = async move {
        if let Err(e) = dialog.handle(&mut tx).await {
            debug!(error = %e, "in-dialog request failed");
        }
    };
    if !reinvite {
        work.await;
        return;
    }
    let mut work = Box::pin(work);
    let done = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx).is_ready())).await;
    if !done {
        tokio::spawn(work);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_and_equal_cseq_are_in_order() {
        assert!(in_order(&Method::Info, 5, None));
        assert!(in_order(&Method::Info, 5, Some(4)));
        assert!(in_order(&Method::Info, 5, Some(5)));
    }

    #[test]
    fn older_cseq_is_out_of_order_except_cancel_and_ack() {
        assert!(!in_order(&Method::Info, 3, Some(4)));
        assert!(!in_order(&Method::Invite, 1, Some(4)));
        assert!(in_order(&Method::Cancel, 1, Some(4)));
        assert!(in_order(&Method::Ack, 1, Some(4)));
    }
}
