//! The gRPC side of the shell, for any tonic service: admission by each RPC's declared access
//! ([`access`]), the statuses of the platform's own refusals ([`status`]), which carry the
//! standard `google.rpc` details a generic client reads, the observation of each call
//! ([`observe`]), the client's deadline ([`grpc_timeout`]), and the services of a listener with
//! health and reflection beside them ([`services`]).

pub mod access;
pub mod observe;
pub mod services;
pub mod status;

/// The deadline a client sent in `grpc-timeout`: at most 8 digits and a unit (`H`, `M`, `S`,
/// `m`, `u`, `n`), as the gRPC protocol defines it. Malformed values are ignored, as grpc-go
/// does.
pub fn grpc_timeout<B>(request: &tonic::codegen::http::Request<B>) -> Option<std::time::Duration> {
    use std::time::Duration;
    let text = request.headers().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::codegen::http::Request;

    use super::grpc_timeout;

    #[test]
    fn client_deadlines_are_read_from_grpc_timeout() {
        let with = |value: &str| {
            let request = Request::builder()
                .header("grpc-timeout", value)
                .body(())
                .unwrap();
            grpc_timeout(&request)
        };
        assert_eq!(with("250m"), Some(Duration::from_millis(250)));
        assert_eq!(with("3S"), Some(Duration::from_secs(3)));
        assert_eq!(with("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(with("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789m", "12x", "-1S", "1.5S"] {
            assert_eq!(with(bad), None, "{bad:?}");
        }
        let none = Request::builder().body(()).unwrap();
        assert_eq!(grpc_timeout(&none), None);
    }
}
