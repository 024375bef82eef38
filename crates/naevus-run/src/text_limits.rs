//! Bounds on the strings of a run's text files (run.json, config.toml): such a file may be
//! damaged or come from anyone, and its values end up in messages ("unknown model ..."), so a
//! value far longer than naevus ever writes is refused first, quoting only its start.

use naevus_data::error::excerpt;

/// Longest string (or key) a run file may hold: PATH_MAX, the longest path Linux opens; the
/// longest string naevus writes is the cache's path in run.json.
pub const MAX_STRING_BYTES: usize = 4096;

/// Where `value` holds a string or key longer than [`MAX_STRING_BYTES`], as a message that
/// names its place and quotes at most its first 80 characters; None when every one is shorter.
pub(crate) fn overlong_string(value: &serde_json::Value) -> Option<String> {
    let (place, text) = find_overlong(value, "")?;
    Some(format!(
        "{place} is {} bytes long (\"{}\"); the names and paths of a run are at most {MAX_STRING_BYTES} bytes",
        text.len(),
        excerpt(text)
    ))
}

/// The first string or key longer than the limit, and its place (e.g. `folds[0]`).
fn find_overlong<'a>(value: &'a serde_json::Value, place: &str) -> Option<(String, &'a str)> {
    let place_or_top = || if place.is_empty() { "the file".to_string() } else { place.to_string() };
    match value {
        serde_json::Value::String(text) if text.len() > MAX_STRING_BYTES => Some((place_or_top(), text)),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| find_overlong(item, &format!("{}[{i}]", place_or_top()))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            if key.len() > MAX_STRING_BYTES {
                return Some((format!("a key in {}", place_or_top()), key.as_str()));
            }
            let inner = if place.is_empty() { key.clone() } else { format!("{place}.{key}") };
            find_overlong(item, &inner)
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_place_of_an_overlong_string_and_quotes_its_start() {
        let long = "x".repeat(MAX_STRING_BYTES + 1);
        assert_eq!(overlong_string(&serde_json::json!({"model": "resnet18", "folds": ["fold-0"]})), None);
        let message = overlong_string(&serde_json::json!({"folds": ["fold-0", long]})).unwrap();
        assert!(message.starts_with("folds[1] is 4097 bytes long (\"xxx"), "{message}");
        assert!(message.len() < 250, "{message}");
        let message = overlong_string(&serde_json::json!({"metadata": {long.clone(): 1}})).unwrap();
        assert!(message.starts_with("a key in metadata is 4097 bytes long"), "{message}");
    }
}
