//! The HTTP side of the shell, for any axum router: request ids ([`request_id`]) and the
//! observation of each request by its matched route ([`observe`]).

pub mod observe;
pub mod request_id;
