//! `agora reconcile`: whether the books balance after a run (a chaos run, an incident, a
//! deploy). It asks order-, payment- and product-service's databases (read-only, through the
//! `audit` queries each service keeps beside its schema; no migrations) and reads the
//! dead-letter topics, waits for the saga to drain, then checks across them:
//!
//! - every order the gateway accepted (`--accepted`) is in order-service's database;
//! - every order is PAID or CANCELLED;
//! - a PAID order has one successful payment of its total, one debit of it and no refund,
//!   and its reservation is committed; a CANCELLED order cost nothing (no debit, or a debit
//!   and its refund) and holds no committed stock; no payment or debit is for an unknown order;
//! - every wallet's balance is the sum of its ledger entries;
//! - each product's committed units are the units of its PAID orders, and (`--stock-before`)
//!   its stock is the stock before the run minus the units PAID orders took since;
//! - no outbox row is left unpublished, and the dead-letter topics are empty.
//!
//! Each broken promise is printed with the order or product it concerns; the exit status is
//! non-zero when there is any.

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
    time::Duration,
};

use agora_events::{
    KafkaBus, KafkaOptions,
    consumer::{ATTEMPTS_HEADER, ERROR_HEADER},
    topics,
};
use anyhow::{Context as _, bail};
use order_service::domain::OrderStatus;
use payment_service::{audit::Ledger, domain::PaymentStatus};
use product_service::domain::ReservationState;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::AnyPool;

use crate::cli::ReconcileArgs;

/// Problems printed one by one; beyond this many, only counted.
const SHOWN_PROBLEMS: usize = 50;

/// What was found; every field but the first group counts broken promises.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Tally {
    pub orders: u64,
    pub paid: u64,
    pub cancelled: u64,
    pub payments: u64,
    /// Payments given back because their order was cancelled first.
    pub refunded: u64,
    /// Orders listed in `--accepted`.
    pub accepted: Option<u64>,
    pub products_checked: u64,
    /// Accepted orders order-service does not have.
    pub lost: u64,
    /// Orders still PENDING_PAYMENT after the wait.
    pub unsettled: u64,
    /// Orders debited more than once, or more than their total.
    pub double_charges: u64,
    /// PAID orders without exactly one successful payment and debit of their total.
    pub paid_not_charged: u64,
    /// CANCELLED orders that still cost their customer something.
    pub cancelled_but_charged: u64,
    /// Payments or ledger entries for orders order-service does not have.
    pub orphan_payments: u64,
    /// Wallets whose balance is not the sum of their ledger entries.
    pub wallet_mismatches: u64,
    /// Products whose stock or committed units disagree with the PAID orders, and orders
    /// whose reservation disagrees with their status.
    pub stock_mismatches: u64,
    /// Reservations neither committed nor released after the wait.
    pub open_reservations: u64,
    pub unpublished_events: u64,
    /// Messages on the dead-letter topics (`None`: no broker given).
    pub dead_letters: Option<u64>,
}

impl Tally {
    /// Broken promises of every kind.
    pub fn broken(&self) -> u64 {
        self.lost
            + self.unsettled
            + self.double_charges
            + self.paid_not_charged
            + self.cancelled_but_charged
            + self.orphan_payments
            + self.wallet_mismatches
            + self.stock_mismatches
            + self.open_reservations
            + self.unpublished_events
            + self.dead_letters.unwrap_or(0)
    }
}

/// The tally, and each broken promise in a sentence.
#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub tally: Tally,
    pub problems: Vec<String>,
}

/// `--save-stock`'s file: per product, its stock plus the units PAID orders have taken, a
/// sum no order changes (a PAID order moves units from one to the other).
#[derive(Debug, Serialize, Deserialize)]
struct StockSnapshot {
    products: BTreeMap<String, i64>,
}

pub async fn run(args: ReconcileArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.save_stock {
        let snapshot = snapshot(&Databases::connect(&args).await?).await?;
        let json = serde_json::to_string_pretty(&snapshot)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("agora reconcile: the stock of {} products saved to {}", snapshot.products.len(), path.display());
        return Ok(());
    }
    let report = reconcile(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    let broken = report.tally.broken();
    if broken > 0 {
        bail!("{broken} broken promises (listed above)");
    }
    Ok(())
}

/// Waits for the saga to drain (`--settle-secs`), then checks every promise.
pub async fn reconcile(args: &ReconcileArgs) -> anyhow::Result<Report> {
    let dbs = Databases::connect(args).await?;
    let accepted = args.accepted.as_deref().map(read_ids).transpose()?;
    let before = args.stock_before.as_deref().map(read_snapshot).transpose()?;
    settle(&dbs, Duration::from_secs(args.settle_secs), !args.json).await?;

    let mut problems = Vec::new();
    let mut tally = Tally { accepted: accepted.as_ref().map(|ids| ids.len() as u64), ..Tally::default() };
    check_orders(&dbs, accepted.as_ref(), &mut tally, &mut problems).await?;
    check_wallets(&dbs, &mut tally, &mut problems).await?;
    check_stock(&dbs, before.as_ref(), &mut tally, &mut problems).await?;
    for (name, db) in dbs.with_outbox() {
        let unpublished = unpublished(db).await?;
        if unpublished > 0 {
            problems.push(format!("{name}'s outbox holds {unpublished} unpublished events"));
        }
        tally.unpublished_events += unpublished;
    }
    if let Some(brokers) = &args.kafka_brokers {
        let options = KafkaOptions {
            prefix: args.kafka_prefix.clone(),
            security: args.kafka.security()?,
            ..KafkaOptions::new(brokers)
        };
        tally.dead_letters = Some(check_dead_letters(options, &mut problems).await?);
    }
    Ok(Report { tally, problems })
}

struct Databases {
    order: AnyPool,
    payment: AnyPool,
    product: AnyPool,
    user: Option<AnyPool>,
}

impl Databases {
    async fn connect(args: &ReconcileArgs) -> anyhow::Result<Self> {
        Ok(Self {
            order: pool(&args.order_db).await?,
            payment: pool(&args.payment_db).await?,
            product: pool(&args.product_db).await?,
            user: match &args.user_db {
                Some(url) => Some(pool(url).await?),
                None => None,
            },
        })
    }

    fn with_outbox(&self) -> Vec<(&'static str, &AnyPool)> {
        let services =
            [("order-service", &self.order), ("payment-service", &self.payment), ("product-service", &self.product)];
        services.into_iter().chain(self.user.as_ref().map(|user| ("user-service", user))).collect()
    }
}

async fn pool(url: &SecretString) -> anyhow::Result<AnyPool> {
    Ok(agora_kit::db::open(url.expose_secret()).await?)
}

async fn unpublished(db: &AnyPool) -> anyhow::Result<u64> {
    Ok(u64::try_from(agora_events::outbox::backlog(db).await?).unwrap_or(0))
}

async fn snapshot(dbs: &Databases) -> anyhow::Result<StockSnapshot> {
    let pending = order_service::audit::pending(&dbs.order).await?;
    let open = product_service::audit::open_reservations(&dbs.product).await?;
    if pending > 0 || open > 0 {
        bail!("{pending} orders are pending and {open} reservations open: save the stock when no order is in flight");
    }
    let paid = order_service::audit::paid_units(&dbs.order).await?;
    let stock = product_service::audit::stock(&dbs.product).await?;
    let products = stock.into_iter().map(|(id, stock)| (id.clone(), stock + paid.get(&id).copied().unwrap_or(0)));
    Ok(StockSnapshot { products: products.collect() })
}

/// Waits until no order is pending, no reservation open and no outbox row unpublished, or
/// `patience` has passed (what is left is then reported as broken).
async fn settle(dbs: &Databases, patience: Duration, show: bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut said = tokio::time::Instant::now();
    loop {
        let pending = order_service::audit::pending(&dbs.order).await?;
        let open = product_service::audit::open_reservations(&dbs.product).await?;
        let mut backlog = 0;
        for (_, db) in dbs.with_outbox() {
            backlog += unpublished(db).await?;
        }
        if pending + open + backlog == 0 || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        if show && said.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "agora reconcile: waiting for {pending} pending orders, {open} open reservations and {backlog} \
                 unpublished events"
            );
            said = tokio::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn check_orders(
    dbs: &Databases,
    accepted: Option<&Vec<String>>,
    tally: &mut Tally,
    problems: &mut Vec<String>,
) -> anyhow::Result<()> {
    let orders = order_service::audit::orders(&dbs.order).await?;
    let payments = payment_service::audit::payments(&dbs.payment).await?;
    let ledgers = payment_service::audit::ledgers(&dbs.payment).await?;
    let reservations = product_service::audit::reservations(&dbs.product).await?;

    tally.orders = orders.len() as u64;
    tally.payments = payments.len() as u64;
    tally.refunded = payments.values().filter(|p| p.status == PaymentStatus::Refunded).count() as u64;
    if let Some(accepted) = accepted {
        for id in accepted.iter().filter(|id| !orders.contains_key(*id)) {
            tally.lost += 1;
            problems.push(format!("order {id} was accepted (201) but order-service does not have it"));
        }
    }
    let none = Ledger::default();
    for (id, order) in &orders {
        let (status, total) = (order.status.as_str(), order.total_minor);
        let ledger = ledgers.get(id).unwrap_or(&none);
        let payment = payments.get(id).map(|p| (p.status.as_str(), p.amount_minor));
        let reservation = reservations.get(id).copied();
        if ledger.debits > 1 || ledger.net_minor < -total {
            tally.double_charges += 1;
            problems.push(format!(
                "order {id} ({status}, total {total}) was debited {} times, net {}",
                ledger.debits, ledger.net_minor
            ));
            continue;
        }
        match order.status {
            OrderStatus::Paid => {
                tally.paid += 1;
                let charged = payment == Some((PaymentStatus::Succeeded.as_str(), total))
                    && (ledger.debits, ledger.refunds, ledger.net_minor) == (1, 0, -total);
                if !charged {
                    tally.paid_not_charged += 1;
                    problems.push(format!(
                        "order {id} is PAID (total {total}) but its payment is {payment:?} and its ledger {ledger:?}"
                    ));
                }
                if reservation != Some(ReservationState::Committed) {
                    tally.stock_mismatches += 1;
                    let reservation = reservation.map(ReservationState::as_str);
                    problems.push(format!("order {id} is PAID but its reservation is {reservation:?}"));
                }
            }
            OrderStatus::Cancelled => {
                tally.cancelled += 1;
                let costless = payments.get(id).is_none_or(|p| p.status != PaymentStatus::Succeeded);
                if !(costless && ledger.net_minor == 0) {
                    tally.cancelled_but_charged += 1;
                    problems.push(format!(
                        "order {id} is CANCELLED but its payment is {payment:?} and its ledger {ledger:?}"
                    ));
                }
                if reservation == Some(ReservationState::Committed) {
                    tally.stock_mismatches += 1;
                    problems.push(format!("order {id} is CANCELLED but its stock stayed committed"));
                }
            }
            OrderStatus::PendingPayment => {
                tally.unsettled += 1;
                problems.push(format!("order {id} is still {status}"));
            }
        }
    }
    let unknown: HashSet<&String> =
        payments.keys().chain(ledgers.keys()).filter(|order| !orders.contains_key(*order)).collect();
    for order in unknown {
        tally.orphan_payments += 1;
        problems.push(format!("payment-service charged or refunded order {order}, which order-service does not have"));
    }
    Ok(())
}

async fn check_wallets(dbs: &Databases, tally: &mut Tally, problems: &mut Vec<String>) -> anyhow::Result<()> {
    for wallet in payment_service::audit::wallets_off_their_ledger(&dbs.payment).await? {
        tally.wallet_mismatches += 1;
        problems.push(format!(
            "wallet of {} holds {} but its ledger sums to {}",
            wallet.user_id, wallet.balance_minor, wallet.entries_minor
        ));
    }
    Ok(())
}

async fn check_stock(
    dbs: &Databases,
    before: Option<&StockSnapshot>,
    tally: &mut Tally,
    problems: &mut Vec<String>,
) -> anyhow::Result<()> {
    tally.open_reservations = product_service::audit::open_reservations(&dbs.product).await?;
    if tally.open_reservations > 0 {
        problems.push(format!("{} reservations are neither committed nor released", tally.open_reservations));
    }
    let paid = order_service::audit::paid_units(&dbs.order).await?;
    let committed = product_service::audit::committed_units(&dbs.product).await?;
    let stock = product_service::audit::stock(&dbs.product).await?;
    for (product, now) in &stock {
        let (paid, committed) = (paid.get(product).copied().unwrap_or(0), committed.get(product).copied().unwrap_or(0));
        if paid != committed {
            tally.stock_mismatches += 1;
            problems.push(format!(
                "product {product}: PAID orders hold {paid} units, product-service committed {committed}"
            ));
        }
        if let Some(initial) = before.and_then(|before| before.products.get(product)) {
            tally.products_checked += 1;
            if now + paid != *initial {
                tally.stock_mismatches += 1;
                problems.push(format!(
                    "product {product}: stock is {now}, not {}: stock plus PAID units was {initial} before, and \
                     PAID units are {paid} now",
                    initial - paid
                ));
            }
        }
    }
    Ok(())
}

async fn check_dead_letters(options: KafkaOptions, problems: &mut Vec<String>) -> anyhow::Result<u64> {
    let brokers = options.brokers.clone();
    let bus = KafkaBus::new(options)?;
    let mut total = 0;
    for topic in [topics::USERS, topics::ORDERS, topics::PAYMENTS] {
        let dlq = topics::dlq(topic);
        let messages = bus.read_topic(&dlq).await.with_context(|| format!("cannot read {dlq} at {brokers}"))?;
        for message in &messages {
            let header = |name: &str| message.headers.get(name).map_or("?", String::as_str);
            problems.push(format!(
                "{dlq} [{}@{}] key {}: {} (after {} attempts)",
                message.partition,
                message.offset,
                message.key,
                header(ERROR_HEADER),
                header(ATTEMPTS_HEADER)
            ));
        }
        total += messages.len() as u64;
    }
    Ok(total)
}

fn read_ids(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|line| !line.is_empty()).map(str::to_owned).collect())
}

fn read_snapshot(path: &Path) -> anyhow::Result<StockSnapshot> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a stock file written by `agora reconcile --save-stock`", path.display()))
}

fn table(report: &Report) -> String {
    let f = &report.tally;
    let mut out = String::new();
    let accepted = f.accepted.map_or_else(String::new, |n| format!(", {n} accepted by the gateway in the run"));
    out.push_str(&format!(
        "orders {} (PAID {}, CANCELLED {}){accepted}; payments {} ({} refunded); products checked against the \
         stock before {}\n",
        f.orders, f.paid, f.cancelled, f.payments, f.refunded, f.products_checked
    ));
    let dead = f.dead_letters.map_or_else(|| "not looked at".to_owned(), |n| n.to_string());
    let rows = [
        ("accepted orders lost", f.lost.to_string()),
        ("orders not settled", f.unsettled.to_string()),
        ("double charges", f.double_charges.to_string()),
        ("PAID orders not charged exactly once", f.paid_not_charged.to_string()),
        ("CANCELLED orders that cost something", f.cancelled_but_charged.to_string()),
        ("charges for unknown orders", f.orphan_payments.to_string()),
        ("wallets off their ledger", f.wallet_mismatches.to_string()),
        ("stock mismatches", f.stock_mismatches.to_string()),
        ("open reservations", f.open_reservations.to_string()),
        ("unpublished events", f.unpublished_events.to_string()),
        ("dead letters", dead),
    ];
    for (what, n) in rows {
        out.push_str(&format!("  {what:<40} {n}\n"));
    }
    for problem in report.problems.iter().take(SHOWN_PROBLEMS) {
        out.push_str(&format!("  ! {problem}\n"));
    }
    if report.problems.len() > SHOWN_PROBLEMS {
        out.push_str(&format!("  ! ... and {} more\n", report.problems.len() - SHOWN_PROBLEMS));
    }
    if report.problems.is_empty() {
        out.push_str("every promise kept\n");
    }
    out
}
