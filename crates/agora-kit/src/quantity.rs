//! How many units of a product an order line asks for.

/// The most units one order line may ask for; far above any real basket, low enough that
/// `price * quantity` cannot be used to probe for overflows with absurd numbers.
pub const MAX_QUANTITY: i64 = 10_000;

/// The most lines one order (and so one stock reservation) may hold: bounds the work one
/// request can cause downstream. order-service and product-service check the same number.
pub const MAX_LINES: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity must be at least 1, got {0}")]
    NotPositive(i64),
    #[error("quantity must be at most {MAX_QUANTITY}, got {0}")]
    TooLarge(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i64);

impl Quantity {
    pub fn new(n: i64) -> Result<Self, QuantityError> {
        if n < 1 {
            Err(QuantityError::NotPositive(n))
        } else if n > MAX_QUANTITY {
            Err(QuantityError::TooLarge(n))
        } else {
            Ok(Self(n))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_negative_and_huge_quantities_are_refused() {
        assert_eq!(Quantity::new(0), Err(QuantityError::NotPositive(0)));
        assert_eq!(Quantity::new(-3), Err(QuantityError::NotPositive(-3)));
        assert_eq!(Quantity::new(i64::MAX), Err(QuantityError::TooLarge(i64::MAX)));
        assert_eq!(Quantity::new(MAX_QUANTITY + 1), Err(QuantityError::TooLarge(MAX_QUANTITY + 1)));
        assert_eq!(Quantity::new(MAX_QUANTITY).unwrap().get(), MAX_QUANTITY);
        assert_eq!(Quantity::new(1).unwrap().get(), 1);
    }
}
