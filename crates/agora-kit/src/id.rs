//! Resource ids: UUIDv7 strings. Version 7 sorts by creation time, so "newest first" and
//! keyset pagination are plain comparisons on the id column.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {value:?} is not a valid id (a UUID)")]
pub struct IdError {
    pub field: &'static str,
    pub value: String,
}

/// A new time-ordered id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Parses a client-supplied id into its canonical lower-case hyphenated form.
pub fn parse_id(field: &'static str, value: &str) -> Result<String, IdError> {
    uuid::Uuid::parse_str(value)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| IdError { field, value: value.chars().take(64).collect() })
}

/// A stable id derived from a name, e.g. the order id for (user, idempotency key), so that a
/// retried request maps to the same resource even after a crash between its steps.
pub fn derived_id(namespace: &str, name: &str) -> String {
    let ns = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, namespace.as_bytes());
    uuid::Uuid::new_v5(&ns, name.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_canonically_and_reject_garbage() {
        let id = new_id();
        assert_eq!(parse_id("id", &id.to_uppercase()).unwrap(), id);
        let err = parse_id("product_id", "42").unwrap_err();
        assert_eq!(err.to_string(), "product_id \"42\" is not a valid id (a UUID)");
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        assert_eq!(derived_id("order", "u1/k1"), derived_id("order", "u1/k1"));
        assert_ne!(derived_id("order", "u1/k1"), derived_id("order", "u2/k1"));
        assert_ne!(derived_id("order", "u1/k1"), derived_id("payment", "u1/k1"));
    }
}
