//! hexkv-server
