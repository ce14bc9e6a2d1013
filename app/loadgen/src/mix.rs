//! What the generator sends: the operations, their weights, and the durations on its
//! command line.

use std::{fmt, str::FromStr, time::Duration};

/// One thing a customer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// The first page of the catalog: `GET /v1/products` (gRPC: `ListProducts`).
    Browse,
    /// One product: `GET /v1/products/{id}` (gRPC: `GetProduct`).
    Product,
    /// `POST /v1/orders` with one or two products, then following the order until it is
    /// PAID or CANCELLED.
    Order,
    /// One of the customer's orders: `GET /v1/orders/{id}` (`GET /v1/orders` before any).
    Read,
    /// An order placed as `order` does and cancelled at once (`POST /v1/orders/{id}:cancel`):
    /// cancelled while pending, refunded if its payment went through first, or refused (400)
    /// once it is PAID.
    Cancel,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Browse, Op::Product, Op::Order, Op::Read, Op::Cancel];

    pub fn name(self) -> &'static str {
        match self {
            Op::Browse => "browse",
            Op::Product => "product",
            Op::Order => "order",
            Op::Read => "read",
            Op::Cancel => "cancel",
        }
    }

    /// Does this operation act as a signed-in customer?
    pub fn needs_customer(self) -> bool {
        matches!(self, Op::Order | Op::Read | Op::Cancel)
    }
}

/// Weighted operations, e.g. `browse=30,product=40,order=20,read=10`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(Op, u32)>,
    total: u32,
}

impl Mix {
    /// An operation drawn by weight.
    pub fn pick(&self, rng: &mut fastrand::Rng) -> Op {
        let mut n = rng.u32(0..self.total);
        for &(op, weight) in &self.weights {
            if n < weight {
                return op;
            }
            n -= weight;
        }
        unreachable!("the weights sum to total")
    }

    pub fn contains(&self, op: Op) -> bool {
        self.weights.iter().any(|&(o, w)| o == op && w > 0)
    }

    pub fn ops(&self) -> impl Iterator<Item = Op> + '_ {
        self.weights.iter().filter(|(_, w)| *w > 0).map(|&(op, _)| op)
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut weights: Vec<(Op, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
            let op = Op::ALL.into_iter().find(|op| op.name() == name.trim()).ok_or_else(|| {
                format!("unknown operation {:?}: the mix takes browse, product, order, read and cancel", name.trim())
            })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("the weight of {name} must be a whole number, got {weight:?}"))?;
            if weights.iter().any(|(o, _)| *o == op) {
                return Err(format!("{name} appears twice in the mix"));
            }
            weights.push((op, weight));
        }
        let total: u32 = weights.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return Err("the mix needs at least one operation with a weight above 0, e.g. product=1".into());
        }
        Ok(Self { weights, total })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.weights.iter().map(|(op, w)| format!("{}={w}", op.name())).collect();
        f.write_str(&parts.join(","))
    }
}

/// `500ms`, `30s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{s:?} is not a duration: write e.g. 500ms, 30s or 2m"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {s:?}: use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{s:?} is not a duration: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_parses_with_default_weights_and_names_what_is_wrong() {
        let mix: Mix = "browse=3, order".parse().unwrap();
        assert_eq!(mix.weights, vec![(Op::Browse, 3), (Op::Order, 1)]);
        assert_eq!(mix.to_string(), "browse=3,order=1");
        assert!(mix.contains(Op::Order) && !mix.contains(Op::Read));

        assert!("buy=1".parse::<Mix>().unwrap_err().contains("unknown operation \"buy\""));
        assert!("read=x".parse::<Mix>().unwrap_err().contains("whole number"));
        assert!("read=1,read=2".parse::<Mix>().unwrap_err().contains("twice"));
        assert!("read=0".parse::<Mix>().unwrap_err().contains("at least one"));
        assert!("".parse::<Mix>().is_err());
    }

    #[test]
    fn picks_follow_the_weights() {
        let mix: Mix = "browse=1,product=3,read=0".parse().unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[mix.pick(&mut rng) as usize] += 1;
        }
        assert_eq!(counts[Op::Read as usize], 0);
        assert_eq!(counts[Op::Order as usize], 0);
        let share = f64::from(counts[Op::Product as usize]) / 40_000.0;
        assert!((0.73..0.77).contains(&share), "product share {share}");
    }

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("2 weeks").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("fast").unwrap_err().contains("not a duration"));
    }
}
