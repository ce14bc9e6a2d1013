//! Catalog data parsed from the wire.

use agora_kit::{
    money::Money,
    quantity::{MAX_LINES, Quantity},
};

const MAX_NAME: usize = 200;
const MAX_DESCRIPTION: usize = 2000;
/// More than any warehouse holds; keeps stock arithmetic far from overflow.
pub const MAX_STOCK: i64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("name must be 1 to {MAX_NAME} characters")]
    Name,
    #[error("description must be at most {MAX_DESCRIPTION} characters")]
    Description,
    #[error("price: {0}")]
    Price(String),
    #[error("stock must be between 0 and {MAX_STOCK}, got {0}")]
    Stock(i64),
    #[error("an update must change at least one field")]
    EmptyPatch,
    #[error("a reservation needs 1 to {MAX_LINES} items")]
    Lines,
    #[error("{0}")]
    Field(String),
}

fn name(raw: &str) -> Result<String, ParseError> {
    let n = raw.trim();
    if n.is_empty() || n.chars().count() > MAX_NAME || n.chars().any(char::is_control) {
        return Err(ParseError::Name);
    }
    Ok(n.to_owned())
}

fn description(raw: &str) -> Result<String, ParseError> {
    if raw.chars().count() > MAX_DESCRIPTION {
        return Err(ParseError::Description);
    }
    Ok(raw.trim().to_owned())
}

fn stock(n: i64) -> Result<i64, ParseError> {
    if (0..=MAX_STOCK).contains(&n) { Ok(n) } else { Err(ParseError::Stock(n)) }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub name: String,
    pub description: String,
    pub price: Money,
    pub stock: i64,
}

impl NewProduct {
    pub fn parse(
        name_raw: &str,
        description_raw: &str,
        price: Result<Money, String>,
        stock_raw: i64,
    ) -> Result<Self, ParseError> {
        Ok(Self {
            name: name(name_raw)?,
            description: description(description_raw)?,
            price: price.map_err(ParseError::Price)?,
            stock: stock(stock_raw)?,
        })
    }
}

/// A partial update: `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<Money>,
    pub stock: Option<i64>,
}

impl ProductPatch {
    pub fn parse(
        name_raw: Option<&str>,
        description_raw: Option<&str>,
        price: Option<Result<Money, String>>,
        stock_raw: Option<i64>,
    ) -> Result<Self, ParseError> {
        let patch = Self {
            name: name_raw.map(name).transpose()?,
            description: description_raw.map(description).transpose()?,
            price: price.transpose().map_err(ParseError::Price)?,
            stock: stock_raw.map(stock).transpose()?,
        };
        if patch == Self::default() {
            return Err(ParseError::EmptyPatch);
        }
        Ok(patch)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub description: String,
    pub price: Money,
    pub stock: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Stock wanted for one order: distinct products (repeated lines are summed), sorted by id so
/// that concurrent reservations lock rows in the same order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRequest {
    pub order_id: String,
    pub lines: Vec<(String, Quantity)>,
}

impl ReservationRequest {
    pub fn parse(order_id: &str, lines: impl IntoIterator<Item = (String, i64)>) -> Result<Self, ParseError> {
        let order_id = agora_kit::id::parse_id("order_id", order_id).map_err(|e| ParseError::Field(e.to_string()))?;
        let mut merged: std::collections::BTreeMap<String, i64> = Default::default();
        for (product_id, quantity) in lines {
            let id =
                agora_kit::id::parse_id("product_id", &product_id).map_err(|e| ParseError::Field(e.to_string()))?;
            Quantity::new(quantity).map_err(|e| ParseError::Field(e.to_string()))?;
            let total = merged.entry(id).or_default();
            *total = total.saturating_add(quantity);
        }
        if merged.is_empty() || merged.len() > MAX_LINES {
            return Err(ParseError::Lines);
        }
        let lines = merged
            .into_iter()
            .map(|(id, q)| Quantity::new(q).map(|q| (id, q)).map_err(|e| ParseError::Field(e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Self { order_id, lines })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationState {
    Reserved,
    Committed,
    Released,
}

impl ReservationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Committed => "committed",
            Self::Released => "released",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reserved" => Some(Self::Reserved),
            "committed" => Some(Self::Committed),
            "released" => Some(Self::Released),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedLine {
    pub product_id: String,
    pub quantity: i64,
    pub unit_price: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub order_id: String,
    pub state: ReservationState,
    pub lines: Vec<ReservedLine>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(n: i64) -> Result<Money, String> {
        Money::new("USD", n).map_err(|e| e.to_string())
    }

    #[test]
    fn products_need_a_name_a_price_and_sane_stock() {
        assert!(NewProduct::parse("Mug", "", usd(900), 5).is_ok());
        assert_eq!(NewProduct::parse("  ", "", usd(900), 5), Err(ParseError::Name));
        assert_eq!(NewProduct::parse("Mug", "", usd(900), -1), Err(ParseError::Stock(-1)));
        assert_eq!(NewProduct::parse("Mug", "", usd(900), MAX_STOCK + 1), Err(ParseError::Stock(MAX_STOCK + 1)));
        assert!(matches!(NewProduct::parse("Mug", "", Err("bad".into()), 1), Err(ParseError::Price(_))));
    }

    #[test]
    fn empty_patches_are_refused() {
        assert_eq!(ProductPatch::parse(None, None, None, None), Err(ParseError::EmptyPatch));
        assert_eq!(ProductPatch::parse(None, None, None, Some(3)).unwrap().stock, Some(3));
    }

    #[test]
    fn reservation_lines_are_merged_sorted_and_bounded() {
        let a = "0190b2c4-0000-7000-8000-00000000000a".to_owned();
        let b = "0190b2c4-0000-7000-8000-00000000000b".to_owned();
        let order = "0190b2c4-0000-7000-8000-0000000000ff";
        let req = ReservationRequest::parse(order, [(b.clone(), 1), (a.clone(), 2), (b.clone(), 3)]).unwrap();
        assert_eq!(req.lines, vec![(a.clone(), Quantity::new(2).unwrap()), (b, Quantity::new(4).unwrap())]);
        assert_eq!(ReservationRequest::parse(order, []), Err(ParseError::Lines));
        assert!(ReservationRequest::parse(order, [(a.clone(), 0)]).is_err());
        assert!(
            ReservationRequest::parse(order, [(a.clone(), 6000), (a, 6000)]).is_err(),
            "merged lines are re-checked"
        );
        assert!(ReservationRequest::parse("nope", []).is_err());
    }
}
