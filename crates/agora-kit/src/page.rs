//! Page sizes and opaque page tokens for keyset pagination.
//!
//! A token is the hex encoding of the last id of the previous page, prefixed with a version
//! letter so its format can change without old tokens being misread.

/// Used when the client asks for 0 (no preference).
pub const DEFAULT_PAGE_SIZE: i64 = 20;
/// The largest page a client may ask for.
pub const MAX_PAGE_SIZE: i64 = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("page_size must be between 0 and {MAX_PAGE_SIZE}, got {0}")]
    Size(i32),
    #[error("page_token is not one this service issued")]
    Token,
}

pub fn page_size(requested: i32) -> Result<i64, PageError> {
    match i64::from(requested) {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        _ => Err(PageError::Size(requested)),
    }
}

pub fn encode_token(last_id: &str) -> String {
    let mut out = String::from("v");
    for b in last_id.as_bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The token for the page after one that ended at `last_id`; empty when `more` is false
/// (the last page).
pub fn next_token(more: bool, last_id: Option<&str>) -> String {
    match (more, last_id) {
        (true, Some(last)) => encode_token(last),
        _ => String::new(),
    }
}

/// `None` for an empty token (the first page).
pub fn decode_token(token: &str) -> Result<Option<String>, PageError> {
    if token.is_empty() {
        return Ok(None);
    }
    let hex = token.strip_prefix('v').ok_or(PageError::Token)?;
    if hex.len() % 2 != 0 || hex.len() > 256 {
        return Err(PageError::Token);
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| PageError::Token))
        .collect::<Result<Vec<u8>, _>>()?;
    String::from_utf8(bytes).map(Some).map_err(|_| PageError::Token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_default_and_are_bounded() {
        assert_eq!(page_size(0), Ok(DEFAULT_PAGE_SIZE));
        assert_eq!(page_size(5), Ok(5));
        assert_eq!(page_size(101), Err(PageError::Size(101)));
        assert_eq!(page_size(-1), Err(PageError::Size(-1)));
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let id = "0190b2c4-aaaa-7bbb-8ccc-123456789abc";
        assert_eq!(decode_token(&encode_token(id)), Ok(Some(id.to_owned())));
        assert_eq!(decode_token(""), Ok(None));
        assert_eq!(decode_token(&next_token(true, Some(id))), Ok(Some(id.to_owned())));
        assert_eq!(next_token(false, Some(id)), "");
        assert_eq!(decode_token("xyz"), Err(PageError::Token));
        assert_eq!(decode_token("vzz"), Err(PageError::Token));
    }
}
