//! hexkv-http
