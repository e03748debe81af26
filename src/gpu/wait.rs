//! Finishing the GPU's futures for a caller that cannot await them. Natively every wait inside them polls
//! the device, so blocking on one (pollster) returns once the GPU is done. A web page must never block: there
//! a future is finished only when it is ready at its first poll, and one that waits for the browser is an
//! error that names the call and points to its `_async` twin.

use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};

/// Finishes `f` (natively by blocking; on wasm32 see [`ready_now`]). `what` names the call for the error.
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<T>(_what: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
    pollster::block_on(f)
}

/// Finishes `f` (natively by blocking; on wasm32 see [`ready_now`]). `what` names the call for the error.
#[cfg(target_arch = "wasm32")]
pub fn block_on<T>(what: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
    ready_now(what, f)
}

/// `f`'s result if it is ready at its first poll; otherwise an error saying that `what` waits for the GPU,
/// which only its `_async` twin can do on the web.
pub fn ready_now<T>(what: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
    match std::pin::pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(Error::Gpu(format!(
            "{what} waits for the GPU, which a web page cannot do without awaiting: use its _async twin"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_future_is_finished_and_a_waiting_one_is_an_error_that_names_the_call() {
        assert_eq!(ready_now("nothing", async { Ok(7) }).unwrap(), 7);
        let (_tx, rx) = futures_channel::oneshot::channel::<()>();
        let waits = async { rx.await.map_err(|_| Error::Gpu("dropped".into())) };
        let e = ready_now("GpuMlp::params", waits).unwrap_err().to_string();
        assert!(e.contains("GpuMlp::params waits for the GPU") && e.contains("_async"), "{e}");
    }
}
