//! hexkv-testkit
