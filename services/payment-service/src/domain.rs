//! Payments and wallets as the domain sees them.

use agora_kit::money::Money;

/// The largest single top-up: a guard against typos with extra zeros (1,000,000.00).
pub const MAX_TOP_UP_MINOR: i64 = 100_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("amount: {0}")]
    Amount(String),
    #[error("a top-up must be more than zero and at most {MAX_TOP_UP_MINOR} minor units")]
    TopUpRange,
    #[error("{0}")]
    Field(String),
}

/// A positive, bounded top-up amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopUp(Money);

impl TopUp {
    pub fn parse(amount: Result<Money, String>) -> Result<Self, ParseError> {
        let amount = amount.map_err(ParseError::Amount)?;
        if amount.is_zero() || amount.minor() > MAX_TOP_UP_MINOR {
            return Err(ParseError::TopUpRange);
        }
        Ok(Self(amount))
    }

    pub fn amount(self) -> Money {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    Succeeded,
    Declined,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "SUCCEEDED",
            Self::Declined => "DECLINED",
            Self::Refunded => "REFUNDED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SUCCEEDED" => Some(Self::Succeeded),
            "DECLINED" => Some(Self::Declined),
            "REFUNDED" => Some(Self::Refunded),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: String,
    pub order_id: String,
    pub user_id: String,
    pub amount: Money,
    pub status: PaymentStatus,
    pub decline_reason: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    pub user_id: String,
    pub balance: Money,
}

/// A placed order, as payment-service charges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderToCharge {
    pub order_id: String,
    pub user_id: String,
    pub total: Money,
}

/// Why a payment was declined when the wallet holds too little.
pub const INSUFFICIENT_FUNDS: &str = "insufficient funds";

/// What charging a wallet for an order comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    /// Debit the order's total.
    Debit,
    /// Decline, for this reason (the payment's `decline_reason`).
    Decline(String),
}

/// Charges `total` to a wallet holding `balance`: declined when the wallet holds another
/// currency or less than the total, debited otherwise. (The store debits on the condition
/// that the balance still covers it, so a concurrent debit turns a `Debit` into a decline
/// for insufficient funds.)
pub fn charge(balance: Money, total: Money) -> Charge {
    if balance.currency() != total.currency() {
        Charge::Decline(format!("wallet holds {}, order is in {}", balance.currency(), total.currency()))
    } else if balance.minor() < total.minor() {
        Charge::Decline(INSUFFICIENT_FUNDS.to_owned())
    } else {
        Charge::Debit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_ups_are_positive_and_bounded() {
        let usd = |n| Money::new("USD", n).map_err(|e| e.to_string());
        assert_eq!(TopUp::parse(usd(500)).unwrap().amount().minor(), 500);
        assert_eq!(TopUp::parse(usd(0)), Err(ParseError::TopUpRange));
        assert_eq!(TopUp::parse(usd(MAX_TOP_UP_MINOR + 1)), Err(ParseError::TopUpRange));
        assert!(matches!(TopUp::parse(Err("bad".into())), Err(ParseError::Amount(_))));
    }

    #[test]
    fn a_charge_is_debited_when_the_wallet_covers_it_in_its_currency() {
        let money = |currency, minor| Money::new(currency, minor).unwrap();
        assert_eq!(charge(money("USD", 500), money("USD", 500)), Charge::Debit, "exactly the balance");
        assert_eq!(charge(money("USD", 500), money("USD", 1)), Charge::Debit);
        assert_eq!(charge(money("USD", 500), money("USD", 501)), Charge::Decline(INSUFFICIENT_FUNDS.into()));
        assert_eq!(
            charge(money("USD", 500), money("EUR", 1)),
            Charge::Decline("wallet holds USD, order is in EUR".into()),
            "another currency is declined whatever the balance"
        );
    }
}
