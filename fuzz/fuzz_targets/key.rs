//! Key parsing, and the listing cursor, on arbitrary bytes: what is accepted keeps the rules.
#![no_main]

use hexkv_core::{Cursor, Key};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(key) = Key::try_from(data) {
        assert_eq!(key.as_bytes(), data);
        assert!(!key.is_empty() && key.len() <= Key::MAX_LEN);
        assert!(!key.as_str().chars().any(char::is_control));
        // A key makes a cursor that decodes back to it.
        let cursor = Cursor::after(key.clone());
        let decoded = Cursor::decode(&cursor.encode()).expect("own cursor");
        assert_eq!(decoded.after_key(), &key);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Cursor::decode(text);
        if let Ok(key) = Key::new(text) {
            assert_eq!(key.as_str(), text);
        }
    }
});
