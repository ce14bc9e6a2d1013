//! Deadlines on the wire: `grpc-timeout`, read from the caller and written on each attempt.

use std::time::Duration;

use tokio::time::Instant;

pub(super) fn remaining(deadline: Instant) -> Option<Duration> {
    deadline.checked_duration_since(Instant::now()).filter(|d| *d >= Duration::from_millis(1))
}

pub(super) use agora_kit::rpc::grpc_timeout;

pub(super) fn set_grpc_timeout(headers: &mut http::HeaderMap, left: Duration) {
    // Milliseconds fit the 8-digit limit up to ~27 hours; beyond that, seconds.
    let millis = left.as_millis();
    let value =
        if millis < 100_000_000 { format!("{millis}m") } else { format!("{}S", left.as_secs().min(99_999_999)) };
    headers.insert("grpc-timeout", http::HeaderValue::from_str(&value).expect("digits and a unit"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_and_print() {
        let mut headers = http::HeaderMap::new();
        for (text, duration) in [
            ("15S", Duration::from_secs(15)),
            ("250m", Duration::from_millis(250)),
            ("2M", Duration::from_secs(120)),
            ("100u", Duration::from_micros(100)),
        ] {
            headers.insert("grpc-timeout", text.parse().unwrap());
            assert_eq!(grpc_timeout(&headers), Some(duration), "{text}");
        }
        for bad in ["", "S", "12x", "-1S"] {
            headers.insert("grpc-timeout", http::HeaderValue::from_str(bad).unwrap());
            assert_eq!(grpc_timeout(&headers), None, "{bad:?}");
        }
        set_grpc_timeout(&mut headers, Duration::from_millis(1234));
        assert_eq!(headers["grpc-timeout"], "1234m");
        set_grpc_timeout(&mut headers, Duration::from_secs(200_000));
        assert_eq!(headers["grpc-timeout"], "200000S");
    }
}
