//! hexkv-store-memory
