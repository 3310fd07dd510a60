//! The HTTP side of the shell, for any axum router: request ids ([`request_id`]), the
//! observation of each request by its matched route ([`observe`]), and error responses as
//! problem+json ([`problem`]).

pub mod observe;
pub mod problem;
pub mod request_id;
