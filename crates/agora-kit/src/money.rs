//! Money as an ISO 4217 currency plus a non-negative amount in integer minor units.
//! Arithmetic is checked: an overflow is an error, never a wrap-around.

use std::fmt;

use agora_proto::Money as PbMoney;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("money is required")]
    Missing,
    #[error("currency code {0:?} is not three upper-case letters (ISO 4217, e.g. \"USD\")")]
    Currency(String),
    #[error("amount {0} is negative")]
    Negative(i64),
    #[error("amount overflows")]
    Overflow,
    #[error("currency mismatch: {0} and {1}")]
    Mismatch(String, String),
}

/// A validated amount: the fields are private so every `Money` in domain code is well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    currency: [u8; 3],
    minor: i64,
}

impl Money {
    pub fn new(currency: &str, minor: i64) -> Result<Self, MoneyError> {
        let bytes = currency.as_bytes();
        let [a, b, c] = bytes else {
            return Err(MoneyError::Currency(currency.to_owned()));
        };
        if !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(MoneyError::Currency(currency.to_owned()));
        }
        if minor < 0 {
            return Err(MoneyError::Negative(minor));
        }
        Ok(Self { currency: [*a, *b, *c], minor })
    }

    pub fn zero(currency: &str) -> Result<Self, MoneyError> {
        Self::new(currency, 0)
    }

    pub fn currency(&self) -> &str {
        // Constructed only from ASCII upper-case letters.
        std::str::from_utf8(&self.currency).unwrap_or("???")
    }

    pub fn minor(&self) -> i64 {
        self.minor
    }

    pub fn is_zero(&self) -> bool {
        self.minor == 0
    }

    fn same_currency(&self, other: &Self) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::Mismatch(self.currency().to_owned(), other.currency().to_owned()))
        }
    }

    pub fn checked_add(&self, other: &Self) -> Result<Self, MoneyError> {
        self.same_currency(other)?;
        let minor = self.minor.checked_add(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Self { minor, ..*self })
    }

    /// `None` when `other` is larger (the balance would go negative).
    pub fn checked_sub(&self, other: &Self) -> Result<Option<Self>, MoneyError> {
        self.same_currency(other)?;
        Ok((self.minor >= other.minor).then(|| Self { minor: self.minor - other.minor, ..*self }))
    }

    pub fn checked_mul(&self, factor: i64) -> Result<Self, MoneyError> {
        let minor = self.minor.checked_mul(factor).ok_or(MoneyError::Overflow)?;
        Self::new(self.currency(), minor)
    }

    pub fn from_proto(pb: Option<PbMoney>) -> Result<Self, MoneyError> {
        let pb = pb.ok_or(MoneyError::Missing)?;
        Self::new(&pb.currency_code, pb.amount_minor)
    }

    pub fn to_proto(self) -> PbMoney {
        PbMoney { currency_code: self.currency().to_owned(), amount_minor: self.minor }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}.{:02}", self.currency(), self.minor / 100, self.minor % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes_must_be_three_upper_case_letters() {
        assert!(Money::new("USD", 1).is_ok());
        for bad in ["usd", "US", "USDX", "", "U$D", "ÜSD"] {
            assert_eq!(Money::new(bad, 1), Err(MoneyError::Currency(bad.into())), "{bad}");
        }
    }

    #[test]
    fn negative_amounts_are_refused() {
        assert_eq!(Money::new("USD", -1), Err(MoneyError::Negative(-1)));
    }

    #[test]
    fn arithmetic_overflow_is_an_error() {
        let max = Money::new("USD", i64::MAX).unwrap();
        assert_eq!(max.checked_add(&Money::new("USD", 1).unwrap()), Err(MoneyError::Overflow));
        assert_eq!(max.checked_mul(2), Err(MoneyError::Overflow));
        assert_eq!(Money::new("USD", 250).unwrap().checked_mul(4).unwrap().minor(), 1000);
    }

    #[test]
    fn subtraction_reports_insufficient_amounts() {
        let ten = Money::new("EUR", 1000).unwrap();
        let three = Money::new("EUR", 300).unwrap();
        assert_eq!(ten.checked_sub(&three).unwrap().unwrap().minor(), 700);
        assert_eq!(three.checked_sub(&ten).unwrap(), None);
        let dollars = Money::new("USD", 1).unwrap();
        assert!(matches!(ten.checked_sub(&dollars), Err(MoneyError::Mismatch(..))));
    }

    #[test]
    fn missing_money_is_an_error_and_display_is_readable() {
        assert_eq!(Money::from_proto(None), Err(MoneyError::Missing));
        assert_eq!(Money::new("USD", 1999).unwrap().to_string(), "USD 19.99");
    }
}
