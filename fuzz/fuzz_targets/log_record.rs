//! The log record decoder and start-up recovery on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hexkv_store_memory::fuzzing::log_record(data);
});
