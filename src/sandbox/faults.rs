//! Fault injection shared by the stand-ins: the next requests matching a method and path prefix
//! fail in a chosen way.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status and JSON body (with `Retry-After` when given) without doing anything.
    Status {
        status: u16,
        body: serde_json::Value,
        retry_after: Option<u64>,
    },
    /// Answer only after this long (beyond the client's timeout, the client sees a timeout).
    Delay(Duration),
    /// Do the work (e.g. create), then answer 500 with an empty body, as if the response was lost.
    DropAfterWork,
    /// Apply the request only after this long, and answer then: a client whose timeout is shorter
    /// has given up by the time it lands (a create that reaches the remote late).
    LateApply(Duration),
}

#[derive(Debug, Default)]
pub struct Faults(Mutex<VecDeque<(String, String, Fault)>>);

impl Faults {
    /// Queues `fault` for the next request whose method is `method` and whose path contains `path`.
    pub fn push(&self, method: &str, path: &str, fault: Fault) {
        if let Ok(mut q) = self.0.lock() {
            q.push_back((method.to_ascii_uppercase(), path.to_string(), fault));
        }
    }

    /// Takes the first queued fault that matches this request.
    pub fn take(&self, method: &str, path: &str) -> Option<Fault> {
        let mut q = self.0.lock().ok()?;
        let i = q
            .iter()
            .position(|(m, p, _)| m == method && path.contains(p.as_str()))?;
        q.remove(i).map(|(_, _, f)| f)
    }
}
