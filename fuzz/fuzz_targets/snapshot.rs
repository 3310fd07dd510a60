//! The snapshot decoder on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hexkv_store_memory::fuzzing::snapshot(data);
});
