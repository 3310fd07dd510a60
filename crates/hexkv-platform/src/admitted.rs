//! [`AdmissionFuture`]: the answer of both transports' admission layers, the inner service's or
//! a refusal made before it was called.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    /// The inner service's response (`Admitted`), or the refusal (`Refused`) that admission
    /// answered instead of calling it.
    #[project = AdmissionProj]
    #[allow(missing_docs)]
    pub enum AdmissionFuture<F, R> {
        Admitted { #[pin] inner: F },
        Refused { response: Option<R> },
    }
}

impl<F, R> AdmissionFuture<F, R> {
    /// A refusal answered at once.
    pub fn refused(response: R) -> Self {
        Self::Refused {
            response: Some(response),
        }
    }
}

impl<F, R> Future for AdmissionFuture<F, R>
where
    F: Future<Output = Result<R, Infallible>>,
{
    type Output = Result<R, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AdmissionProj::Admitted { inner } => inner.poll(cx),
            AdmissionProj::Refused { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}
