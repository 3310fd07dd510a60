//! The HTTP side of the shell, for any axum router: the route table with each route's declared
//! access and the admission of every request by it ([`access`]), request ids ([`request_id`]), the
//! observation of each request by its matched route ([`observe`]), and error responses as
//! problem+json ([`problem`]).

pub mod access;
pub mod observe;
pub mod problem;
pub mod request_id;
pub mod stack;
