//! Orders as the domain sees them.

use agora_kit::{
    money::Money,
    quantity::{MAX_LINES, Quantity},
};

/// Idempotency keys are opaque client strings; 255 is what common APIs allow.
pub const MAX_KEY: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("an order needs 1 to {MAX_LINES} items")]
    Lines,
    #[error("items[{index}]: {message}")]
    Line { index: usize, message: String },
    #[error("idempotency key must be 1 to {MAX_KEY} visible ASCII characters")]
    Key,
    #[error("{0}")]
    Field(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.is_empty() || raw.len() > MAX_KEY || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ParseError::Key);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated `CreateOrder`: distinct products (repeated lines summed), sorted by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    pub lines: Vec<(String, Quantity)>,
    pub key: Option<IdempotencyKey>,
}

impl OrderRequest {
    pub fn parse(lines: impl IntoIterator<Item = (String, i64)>, key: Option<&str>) -> Result<Self, ParseError> {
        let mut merged: std::collections::BTreeMap<String, i64> = Default::default();
        for (index, (product_id, quantity)) in lines.into_iter().enumerate() {
            let line_error = |message: String| ParseError::Line { index, message };
            let id = agora_kit::id::parse_id("product_id", &product_id).map_err(|e| line_error(e.to_string()))?;
            Quantity::new(quantity).map_err(|e| line_error(e.to_string()))?;
            let total = merged.entry(id).or_default();
            *total = total.saturating_add(quantity);
        }
        if merged.is_empty() || merged.len() > MAX_LINES {
            return Err(ParseError::Lines);
        }
        let lines = merged
            .into_iter()
            .map(|(id, q)| {
                Quantity::new(q).map(|q| (id.clone(), q)).map_err(|e| ParseError::Field(format!("product {id}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let key = key.filter(|k| !k.is_empty()).map(IdempotencyKey::parse).transpose()?;
        Ok(Self { lines, key })
    }

    /// The normalised basket, compared when an idempotency key is reused.
    pub fn fingerprint(&self) -> String {
        self.lines.iter().map(|(id, q)| format!("{id}x{}", q.get())).collect::<Vec<_>>().join(",")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "PENDING_PAYMENT",
            Self::Paid => "PAID",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING_PAYMENT" => Some(Self::PendingPayment),
            "PAID" => Some(Self::Paid),
            "CANCELLED" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub product_id: String,
    pub quantity: i64,
    pub unit_price: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    pub user_id: String,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub status: OrderStatus,
    pub cancel_reason: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Sums `price × quantity` over the lines; every line must use the same currency.
pub fn total(lines: &[OrderLine]) -> Result<Money, agora_kit::money::MoneyError> {
    let first = lines.first().ok_or(agora_kit::money::MoneyError::Missing)?;
    lines.iter().try_fold(Money::zero(first.unit_price.currency())?, |sum, line| {
        sum.checked_add(&line.unit_price.checked_mul(line.quantity)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_kit::money::MoneyError;

    const A: &str = "0190b2c4-0000-7000-8000-00000000000a";
    const B: &str = "0190b2c4-0000-7000-8000-00000000000b";

    #[test]
    fn requests_merge_lines_and_name_the_bad_one() {
        let req = OrderRequest::parse([(B.into(), 1), (A.into(), 2), (B.into(), 1)], None).unwrap();
        assert_eq!(req.fingerprint(), format!("{A}x2,{B}x2"));
        assert_eq!(OrderRequest::parse([], None), Err(ParseError::Lines));
        let err = OrderRequest::parse([(A.into(), 1), (B.into(), 0)], None).unwrap_err();
        assert_eq!(err.to_string(), "items[1]: quantity must be at least 1, got 0");
        let err = OrderRequest::parse([("x".into(), 1)], None).unwrap_err();
        assert!(err.to_string().starts_with("items[0]: product_id"), "{err}");
        assert!(OrderRequest::parse([(A.into(), i64::MAX)], None).is_err());
    }

    #[test]
    fn idempotency_keys_are_bounded_visible_ascii() {
        assert!(IdempotencyKey::parse("order-2024-001").is_ok());
        assert_eq!(IdempotencyKey::parse("has space"), Err(ParseError::Key));
        assert_eq!(IdempotencyKey::parse(&"k".repeat(256)), Err(ParseError::Key));
        assert_eq!(OrderRequest::parse([(A.into(), 1)], Some("")).unwrap().key, None);
    }

    #[test]
    fn totals_are_checked() {
        let usd = |n| Money::new("USD", n).unwrap();
        let line = |q, price| OrderLine { product_id: A.into(), quantity: q, unit_price: price };
        assert_eq!(total(&[line(2, usd(150)), line(1, usd(5))]).unwrap(), usd(305));
        assert_eq!(total(&[line(2, usd(i64::MAX / 2 + 1))]), Err(MoneyError::Overflow));
        let eur = Money::new("EUR", 1).unwrap();
        assert!(matches!(total(&[line(1, usd(1)), line(1, eur)]), Err(MoneyError::Mismatch(..))));
    }
}
