//! The gRPC side of the shell, for any tonic service: admission by each RPC's declared access
//! ([`access`]) and the statuses of the platform's own refusals ([`status`]), which carry the
//! standard `google.rpc` details a generic client reads.

pub mod access;
pub mod status;
