#![no_main]
//! The service's access token (crates/naevus-serve/src/token.rs, included as it is): the
//! first byte chooses whether the rest is a token to check, or an Authorization header value
//! to read a Bearer token from and compare with a fixed secret.

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/naevus-serve/src/token.rs"]
#[allow(dead_code)]
mod token;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else { return };
    if choice % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else { return };
        if token::check_token(text).is_ok() {
            // A token taken is one every client can send in a header line.
            assert!(text.len() >= token::MIN_TOKEN_CHARS && text.len() <= token::MAX_TOKEN_CHARS);
            assert!(text.bytes().all(|b| b.is_ascii_graphic()));
        }
    } else if let Some(given) = token::bearer_token(rest) {
        assert!(!given.is_empty() && given.trim() == given);
        assert_eq!(token::same_secret(given.as_bytes(), SECRET), given.as_bytes() == SECRET);
    }
});
