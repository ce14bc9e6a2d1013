//! The history of a run (`agora loadgen --history FILE`): every operation a client did, with
//! when it was invoked and when it completed, what it asked and what it was told, one JSON
//! object per line, written as each operation completes. The run ends with the final state
//! as the customers read it once it stopped changing. [`crate::checker`] reads the file back
//! and looks for answers no correct platform could have given.
//!
//! Times are milliseconds on the generator's monotonic clock since the run began, so a
//! wall clock stepped or skewed during the run cannot reorder them.

use std::{
    fs::File,
    io::{BufRead as _, LineWriter, Write as _},
    path::Path,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One completed operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Its number, in the order operations completed.
    pub op: u64,
    /// Invoked and completed, in ms since the run began.
    pub start: f64,
    pub end: f64,
    /// The customer (an index into the run's customers) it acted as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<usize>,
    /// `201`, `404`, `503`, `timeout`, `connection error`…, after the client's retries.
    pub status: String,
    /// What the status tells about the operation's effect.
    pub outcome: Outcome,
    #[serde(flatten)]
    pub call: Call,
}

/// Whether an operation took effect, as far as its client can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A 2xx: it happened.
    Ok,
    /// A definite refusal (a 4xx but 429): it did not happen.
    Fail,
    /// No definite answer (a 5xx, a 429, a timeout, a lost connection): it may have happened.
    Info,
}

impl Outcome {
    pub fn of(status: &str) -> Self {
        match status.as_bytes().first() {
            Some(b'2') => Outcome::Ok,
            Some(b'4') if status != "429" => Outcome::Fail,
            _ => Outcome::Info,
        }
    }
}

/// What was asked, and what the answer held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Call {
    /// The run began (the first line): the wall clock then, in Unix ms, to place the
    /// history's monotonic times against other records (a fault's time in `make chaos`).
    Run { unix_ms: i64 },
    /// A customer signed up (set-up).
    Customer { user: String },
    /// A customer's wallet was topped up by `amount`; `balance` is what it then held.
    TopUp { amount: i64, balance: i64 },
    /// The generator created `product` with `stock` units (set-up).
    Product { product: String, stock: i64 },
    /// `POST /v1/orders`, and the order it returned.
    Order {
        key: String,
        items: Vec<Item>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seen: Option<Seen>,
    },
    /// `GET /v1/orders/{id}` by the order's customer.
    Read {
        order: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seen: Option<Seen>,
    },
    /// `POST /v1/orders/{id}:cancel` by the order's customer.
    Cancel {
        order: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seen: Option<Seen>,
    },
    /// `GET /v1/orders` (a customer's latest orders).
    List { seen: Vec<Seen> },
    /// A customer's final state: every order, every payment and the wallet's balance, read
    /// after the run once two reads in a row agreed.
    Final { orders: Vec<Seen>, payments: Vec<Payment>, balance: i64 },
    /// A product's final stock, read likewise.
    FinalStock { product: String, stock: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub product: String,
    pub quantity: i64,
}

/// An order as an answer showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub id: String,
    pub status: Status,
    /// The total in minor units.
    pub total: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    PendingPayment,
    Paid,
    Cancelled,
}

impl Status {
    /// How far along the saga: an order only ever moves to a higher rank.
    pub fn rank(self) -> u8 {
        match self {
            Status::PendingPayment => 0,
            Status::Paid | Status::Cancelled => 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub order: String,
    /// `SUCCEEDED`, `DECLINED` or `REFUNDED`.
    pub status: String,
    pub amount: i64,
}

/// An order in the gateway's JSON (`status` `ORDER_STATUS_PAID`, money as strings).
pub fn seen(order: &Value) -> Option<Seen> {
    let status = match order["status"].as_str()? {
        "ORDER_STATUS_PENDING_PAYMENT" => Status::PendingPayment,
        "ORDER_STATUS_PAID" => Status::Paid,
        "ORDER_STATUS_CANCELLED" => Status::Cancelled,
        _ => return None,
    };
    let items = order["items"].as_array().map(|items| items.iter().filter_map(item).collect()).unwrap_or_default();
    Some(Seen { id: order["id"].as_str()?.to_owned(), status, total: minor(&order["total"]).unwrap_or(0), items })
}

pub fn item(item: &Value) -> Option<Item> {
    Some(Item { product: item["productId"].as_str()?.to_owned(), quantity: integer(&item["quantity"])? })
}

/// A payment in the gateway's JSON.
pub fn payment(payment: &Value) -> Option<Payment> {
    Some(Payment {
        order: payment["orderId"].as_str()?.to_owned(),
        status: payment["status"].as_str()?.trim_start_matches("PAYMENT_STATUS_").to_owned(),
        amount: minor(&payment["amount"]).unwrap_or(0),
    })
}

/// `{"currencyCode": "USD", "amountMinor": "1250"}` → 1250.
pub fn minor(money: &Value) -> Option<i64> {
    integer(&money["amountMinor"])
}

/// An int64 as proto3 JSON writes it (a string) or as a number.
pub fn integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_str()?.parse().ok())
}

/// Where a run's operations are written as they complete.
#[derive(Debug)]
pub struct History {
    file: Mutex<LineWriter<File>>,
    origin: Instant,
    next: AtomicU64,
}

impl History {
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = File::create(path).with_context(|| format!("cannot create the history file {}", path.display()))?;
        let history = Self { file: Mutex::new(LineWriter::new(file)), origin: Instant::now(), next: AtomicU64::new(0) };
        history.record(history.origin, None, "200", Call::Run { unix_ms: agora_kit::time::now_millis() });
        Ok(history)
    }

    /// An operation invoked at `start` completed now with `status`.
    pub fn record(&self, start: Instant, customer: Option<usize>, status: &str, call: Call) {
        let millis = |at: Instant| (at.saturating_duration_since(self.origin).as_secs_f64() * 1e6).round() / 1e3;
        let entry = Entry {
            op: self.next.fetch_add(1, Ordering::Relaxed),
            start: millis(start),
            end: millis(Instant::now()),
            customer,
            status: status.to_owned(),
            outcome: Outcome::of(status),
            call,
        };
        let mut line = serde_json::to_string(&entry).expect("a history entry serializes");
        line.push('\n');
        if let Err(e) = self.file.lock().expect("history lock").write_all(line.as_bytes()) {
            eprintln!("agora loadgen: cannot write the history: {e}");
        }
    }
}

/// Reads a history file; a line that is not an entry is an error naming it.
pub fn read(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let file = File::open(path).with_context(|| format!("cannot open the history file {}", path.display()))?;
    let mut entries = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let entry = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a history entry: {line:.200}", path.display(), n + 1))?;
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_entry_is_one_flat_json_object_and_reads_back() {
        let entry = Entry {
            op: 7,
            start: 1.5,
            end: 3.25,
            customer: Some(2),
            status: "201".into(),
            outcome: Outcome::Ok,
            call: Call::Order {
                key: "k".into(),
                items: vec![Item { product: "p".into(), quantity: 2 }],
                seen: Some(Seen { id: "o".into(), status: Status::PendingPayment, total: 300, items: vec![] }),
            },
        };
        let line = serde_json::to_value(&entry).unwrap();
        assert_eq!(line["f"], "order");
        assert_eq!(line["seen"]["status"], "PENDING_PAYMENT");
        assert_eq!(serde_json::from_value::<Entry>(line).unwrap(), entry);
    }

    #[test]
    fn outcomes_follow_the_status() {
        assert_eq!(Outcome::of("201"), Outcome::Ok);
        assert_eq!(Outcome::of("404"), Outcome::Fail);
        assert_eq!(Outcome::of("429"), Outcome::Info);
        assert_eq!(Outcome::of("503"), Outcome::Info);
        assert_eq!(Outcome::of("timeout"), Outcome::Info);
    }

    #[test]
    fn the_gateways_json_becomes_orders_and_payments() {
        let order = json!({"id": "o1", "status": "ORDER_STATUS_PAID", "total": {"currencyCode": "USD", "amountMinor": "1250"},
            "items": [{"productId": "p1", "quantity": "2"}]});
        assert_eq!(
            seen(&order),
            Some(Seen {
                id: "o1".into(),
                status: Status::Paid,
                total: 1250,
                items: vec![Item { product: "p1".into(), quantity: 2 }]
            })
        );
        let paid = json!({"orderId": "o1", "status": "PAYMENT_STATUS_REFUNDED", "amount": {"amountMinor": "1250"}});
        assert_eq!(payment(&paid), Some(Payment { order: "o1".into(), status: "REFUNDED".into(), amount: 1250 }));
    }
}
