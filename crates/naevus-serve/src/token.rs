//! The access token: which tokens the service takes, how a request carries one, and how the
//! two are compared. Plain std, so that the fuzz target `bearer_token` includes this file.

/// Shortest access token taken.
pub const MIN_TOKEN_CHARS: usize = 16;
/// Longest access token taken (a header line must hold it).
pub const MAX_TOKEN_CHARS: usize = 1024;

/// Refuses an access token no client could send or that is too easy to guess: it must be
/// 16 to 1024 visible ASCII characters (an HTTP header carries nothing else reliably).
pub fn check_token(token: &str) -> Result<(), String> {
    if let Some(bad) = token.chars().find(|c| !c.is_ascii_graphic()) {
        let what = if bad.is_whitespace() { "a space or other blank".to_string() } else { format!("the character {:?}", bad.escape_default().to_string()) };
        return Err(format!(
            "the access token holds {what}; it must be visible ASCII characters only (letters, digits, punctuation), as HTTP headers carry, e.g. `openssl rand -hex 32`"
        ));
    }
    let length = token.len();
    if length < MIN_TOKEN_CHARS {
        return Err(format!("the access token is {length} characters long, shorter than {MIN_TOKEN_CHARS}; use a long random one (e.g. `openssl rand -hex 32`)"));
    }
    if length > MAX_TOKEN_CHARS {
        return Err(format!("the access token is {length} characters long, over {MAX_TOKEN_CHARS}"));
    }
    Ok(())
}

/// The token of an `Authorization: Bearer TOKEN` header value; the scheme's case does not
/// matter (RFC 9110, 11.1), blanks around the token do not count.
pub fn bearer_token(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|token| !token.is_empty())
}

/// Compares without stopping at the first difference, so that the time taken does not tell
/// how much of a guess was right.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abcdefgh", b"abcdefgh"));
        assert!(!same_secret(b"abcdefgh", b"abcdefgx"));
        assert!(!same_secret(b"abc", b"abcdefgh"));
    }

    #[test]
    fn the_scheme_is_read_in_any_case_and_the_token_trimmed() {
        assert_eq!(bearer_token(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer_token(b"bEaReR   abc  "), Some("abc"));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearer \xff\xfe"), None);
    }

    #[test]
    fn only_long_visible_ascii_tokens_are_taken() {
        assert!(check_token("0123456789abcdef").is_ok());
        assert!(check_token("0123456789abcde").unwrap_err().contains("shorter than 16"));
        assert!(check_token("0123456789abcdef é").unwrap_err().contains("visible ASCII"));
        assert!(check_token("0123456789 abcdef").unwrap_err().contains("a space"));
        assert!(check_token(&"a".repeat(1025)).unwrap_err().contains("over 1024"));
    }
}
