//! [`Refusals`]: the errors the server sent on one connection, for a one-shot command to wait on
//! beside its request.

/// Errors the server sent on one connection (permissions violations and the like).
#[derive(Debug, Clone, Default)]
pub struct Refusals(std::sync::Arc<(std::sync::Mutex<Vec<String>>, tokio::sync::Notify)>);

impl Refusals {
    pub(super) fn record(&self, error: String) {
        self.0
             .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(error);
        self.0 .1.notify_waiters();
    }

    /// Every refusal so far.
    pub fn seen(&self) -> Vec<String> {
        self.0 .0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many refusals there were so far: pass it to [`Self::since`] before sending.
    pub fn mark(&self) -> usize {
        self.seen().len()
    }

    /// Waits until a refusal after `mark` arrives and returns it.
    pub async fn since(&self, mark: usize) -> String {
        loop {
            let notified = self.0 .1.notified();
            tokio::pin!(notified);
            // Registered before the check, so a refusal between the check and the wait wakes us.
            notified.as_mut().enable();
            if let Some(e) = self.seen().get(mark) {
                return e.clone();
            }
            notified.await;
        }
    }
}
