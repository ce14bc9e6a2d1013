//! Wall-clock instants as Unix milliseconds (`i64`): the one representation stored in both
//! SQLite and PostgreSQL, converted to `google.protobuf.Timestamp` only at the wire.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

pub fn to_timestamp(millis: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_become_timestamps() {
        assert_eq!(to_timestamp(1_500), prost_types::Timestamp { seconds: 1, nanos: 500_000_000 });
        assert_eq!(to_timestamp(-1), prost_types::Timestamp { seconds: -1, nanos: 999_000_000 });
    }
}
