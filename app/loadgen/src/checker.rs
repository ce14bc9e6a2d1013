//! `agora check-history`: what a run's clients were told ([`crate::history`]) checked against
//! itself and against the final state the customers read at its end.
//!
//! Each promise is a rule over the history, and each broken one an [`Anomaly`] naming the
//! operations involved:
//! - an order acknowledged with a 2xx exists at the end ([`Kind::Lost`]), unchanged
//!   ([`Kind::Changed`]), and PAID or CANCELLED ([`Kind::Unsettled`]);
//! - an order only moves forward: once an answer that completed before another began showed
//!   it PAID or CANCELLED, the later one may not show it pending or the other way
//!   ([`Kind::WentBack`]);
//! - a customer who was told an order exists finds it (404 after the 2xx: [`Kind::ReadYourWrites`]);
//! - no order exists that no request could have made ([`Kind::Phantom`]: more unacknowledged
//!   orders than requests that got no definite answer);
//! - each order is charged at most once ([`Kind::DoubleCharge`]), a PAID one exactly once
//!   ([`Kind::PaidNotCharged`]), a CANCELLED one not at all ([`Kind::CancelledButCharged`]),
//!   and no payment is for an order the customer does not have ([`Kind::StrayPayment`]);
//! - each wallet holds its opening balance plus its top-ups minus its PAID orders
//!   ([`Kind::Wallet`]), and each of the generator's products its first stock minus the
//!   units PAID ([`Kind::Stock`]);
//! - the final state was read ([`Kind::Unread`]), else the rest cannot be judged.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::history::{Call, Entry, Item, Outcome, Seen, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Lost,
    Changed,
    Unsettled,
    WentBack,
    ReadYourWrites,
    Phantom,
    DoubleCharge,
    PaidNotCharged,
    CancelledButCharged,
    StrayPayment,
    Wallet,
    Stock,
    Unread,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Lost => "lost",
            Kind::Changed => "changed",
            Kind::Unsettled => "unsettled",
            Kind::WentBack => "went-back",
            Kind::ReadYourWrites => "read-your-writes",
            Kind::Phantom => "phantom",
            Kind::DoubleCharge => "double-charge",
            Kind::PaidNotCharged => "paid-not-charged",
            Kind::CancelledButCharged => "cancelled-but-charged",
            Kind::StrayPayment => "stray-payment",
            Kind::Wallet => "wallet",
            Kind::Stock => "stock",
            Kind::Unread => "unread",
        }
    }
}

/// One broken promise, with the operations that show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    pub kind: Kind,
    pub message: String,
    pub ops: Vec<u64>,
}

/// What was checked, and what was found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub operations: usize,
    pub customers: usize,
    pub products: usize,
    /// Orders acknowledged with a 2xx.
    pub acknowledged: usize,
    /// Order requests that got no definite answer.
    pub indefinite: usize,
    /// Orders at the end, by status.
    pub paid: usize,
    pub cancelled: usize,
    /// Ordered pairs of answers about one order compared for [`Kind::WentBack`].
    pub observations: usize,
    pub anomalies: Vec<Anomaly>,
}

impl Verdict {
    /// How many anomalies of each kind.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for anomaly in &self.anomalies {
            *counts.entry(anomaly.kind.name()).or_default() += 1;
        }
        counts
    }

    /// The report `agora check-history` prints.
    pub fn report(&self) -> String {
        let mut out = format!(
            "history: {} operations, {} customers, {} products; {} orders acknowledged, {} requests with no definite \
             answer; at the end {} PAID, {} CANCELLED; {} observations of an order compared\n",
            self.operations,
            self.customers,
            self.products,
            self.acknowledged,
            self.indefinite,
            self.paid,
            self.cancelled,
            self.observations,
        );
        if self.anomalies.is_empty() {
            out.push_str("anomalies: none\n");
            return out;
        }
        let counts: Vec<String> = self.counts().iter().map(|(kind, n)| format!("{kind} {n}")).collect();
        out.push_str(&format!("anomalies: {} ({})\n", self.anomalies.len(), counts.join(", ")));
        for anomaly in &self.anomalies {
            let ops: Vec<String> = anomaly.ops.iter().map(u64::to_string).collect();
            out.push_str(&format!("  {:<22} {} [ops {}]\n", anomaly.kind.name(), anomaly.message, ops.join(", ")));
        }
        out
    }
}

/// An answer that showed an order's status.
#[derive(Debug, Clone, Copy)]
struct Observation {
    op: u64,
    start: f64,
    end: f64,
    status: Status,
}

/// Checks `history` (the entries of one run, in any order).
pub fn check(history: &[Entry]) -> Verdict {
    let mut verdict = Verdict { operations: history.len(), ..Verdict::default() };
    let mut anomalies = Vec::new();

    // The run's facts, gathered.
    let mut customers = HashSet::new();
    let mut top_ups: HashMap<usize, Vec<(i64, i64)>> = HashMap::new();
    let mut products: BTreeMap<&str, (u64, i64)> = BTreeMap::new();
    let mut acked: HashMap<&str, (&Entry, &Seen)> = HashMap::new();
    let mut indefinite: HashMap<usize, usize> = HashMap::new();
    let mut finals: BTreeMap<usize, &Entry> = BTreeMap::new();
    let mut final_stock: HashMap<&str, (u64, i64)> = HashMap::new();
    let mut observed: HashMap<&str, Vec<Observation>> = HashMap::new();
    fn observe<'a>(observed: &mut HashMap<&'a str, Vec<Observation>>, seen: &'a Seen, entry: &Entry) {
        let at = Observation { op: entry.op, start: entry.start, end: entry.end, status: seen.status };
        observed.entry(seen.id.as_str()).or_default().push(at);
    }
    for entry in history {
        let ok = entry.outcome == Outcome::Ok;
        let customer = entry.customer.unwrap_or(usize::MAX);
        match &entry.call {
            Call::Customer { .. } if ok => {
                customers.insert(customer);
            }
            Call::TopUp { amount, balance } if ok => top_ups.entry(customer).or_default().push((*amount, *balance)),
            Call::Product { product, stock } if ok => {
                products.insert(product.as_str(), (entry.op, *stock));
            }
            Call::Order { seen: Some(seen), .. } if ok => {
                acked.insert(seen.id.as_str(), (entry, seen));
                observe(&mut observed, seen, entry);
            }
            Call::Order { .. } if entry.outcome == Outcome::Info => *indefinite.entry(customer).or_default() += 1,
            Call::Read { seen: Some(seen), .. } | Call::Cancel { seen: Some(seen), .. } if ok => {
                observe(&mut observed, seen, entry)
            }
            Call::List { seen } if ok => seen.iter().for_each(|seen| observe(&mut observed, seen, entry)),
            Call::Final { orders, .. } if ok => {
                orders.iter().for_each(|seen| observe(&mut observed, seen, entry));
                finals.insert(customer, entry);
            }
            Call::FinalStock { product, stock } if ok => {
                final_stock.insert(product.as_str(), (entry.op, *stock));
            }
            _ => {}
        }
    }
    verdict.customers = customers.len();
    verdict.products = products.len();
    verdict.acknowledged = acked.len();
    verdict.indefinite = indefinite.values().sum();

    // Read-your-writes: a 404 for an order its customer had been told exists.
    for entry in history {
        if let (Call::Read { order, .. } | Call::Cancel { order, .. }, "404") = (&entry.call, entry.status.as_str())
            && let Some((ack, _)) = acked.get(order.as_str())
            && ack.end < entry.start
        {
            anomalies.push(Anomaly {
                kind: Kind::ReadYourWrites,
                message: format!(
                    "order {order}, acknowledged at {:.0} ms, answered 404 to its customer at {:.0} ms",
                    ack.end, entry.start
                ),
                ops: vec![ack.op, entry.op],
            });
        }
    }

    // Monotonic: no answer shows an order behind one that completed before it began.
    let mut orders: Vec<(&&str, &mut Vec<Observation>)> = observed.iter_mut().collect();
    orders.sort_by(|a, b| a.0.cmp(b.0));
    for (order, seen) in orders {
        seen.sort_by(|a, b| a.end.total_cmp(&b.end));
        let went_back = seen.iter().enumerate().find_map(|(i, later)| {
            seen[..i]
                .iter()
                .filter(|earlier| earlier.end < later.start)
                .find(|earlier| {
                    verdict.observations += 1;
                    later.status.rank() < earlier.status.rank()
                        || (later.status.rank() == 1 && earlier.status.rank() == 1 && later.status != earlier.status)
                })
                .map(|earlier| (*earlier, *later))
        });
        if let Some((earlier, later)) = went_back {
            anomalies.push(Anomaly {
                kind: Kind::WentBack,
                message: format!(
                    "order {order} was {:?} in an answer that ended at {:.0} ms, then {:?} in one that began at {:.0} ms",
                    earlier.status, earlier.end, later.status, later.start
                ),
                ops: vec![earlier.op, later.op],
            });
        }
    }

    // The final state of each customer who ordered.
    let ordered: HashSet<usize> =
        acked.values().filter_map(|(entry, _)| entry.customer).chain(indefinite.keys().copied()).collect();
    let mut missing: Vec<usize> = ordered.iter().copied().filter(|c| !finals.contains_key(c)).collect();
    missing.sort_unstable();
    for customer in missing {
        anomalies.push(Anomaly {
            kind: Kind::Unread,
            message: format!("customer {customer} ordered but their final state was never read"),
            ops: Vec::new(),
        });
    }
    let mut sold: HashMap<&str, i64> = HashMap::new();
    let mut at_end: HashMap<&str, (usize, &Seen, u64)> = HashMap::new();
    for (&customer, entry) in &finals {
        let Call::Final { orders, payments, balance } = &entry.call else { continue };
        let mut paid_total = 0;
        for seen in orders {
            at_end.insert(&seen.id, (customer, seen, entry.op));
            match seen.status {
                Status::Paid => {
                    verdict.paid += 1;
                    paid_total += seen.total;
                    for item in &seen.items {
                        *sold.entry(&item.product).or_default() += item.quantity;
                    }
                }
                Status::Cancelled => verdict.cancelled += 1,
                Status::PendingPayment => anomalies.push(Anomaly {
                    kind: Kind::Unsettled,
                    message: format!("order {} of customer {customer} is still PENDING_PAYMENT at the end", seen.id),
                    ops: vec![entry.op],
                }),
            }
        }
        // Orders nobody was told about: at most one per request that got no definite answer.
        let unacknowledged: Vec<&str> =
            orders.iter().map(|seen| seen.id.as_str()).filter(|id| !acked.contains_key(id)).collect();
        let allowed = indefinite.get(&customer).copied().unwrap_or(0);
        if unacknowledged.len() > allowed {
            anomalies.push(Anomaly {
                kind: Kind::Phantom,
                message: format!(
                    "customer {customer} has {} orders never acknowledged but sent only {allowed} order requests \
                     without a definite answer: {}",
                    unacknowledged.len(),
                    unacknowledged.join(", ")
                ),
                ops: vec![entry.op],
            });
        }
        check_payments(customer, entry.op, orders, payments, &mut anomalies);
        if let Some(top_ups) = top_ups.get(&customer) {
            let (first_amount, first_balance) = top_ups[0];
            let opening = first_balance - first_amount;
            let expected = opening + top_ups.iter().map(|(amount, _)| amount).sum::<i64>() - paid_total;
            if *balance != expected {
                anomalies.push(Anomaly {
                    kind: Kind::Wallet,
                    message: format!(
                        "customer {customer}'s wallet holds {balance}, not {expected} (opening {opening} + top-ups {} \
                         - PAID orders {paid_total})",
                        expected - opening + paid_total
                    ),
                    ops: vec![entry.op],
                });
            }
        }
    }

    // Every acknowledged order is there, as it was acknowledged.
    let mut acks: Vec<&(&Entry, &Seen)> = acked.values().collect();
    acks.sort_by_key(|(entry, _)| entry.op);
    for (ack, seen) in acks {
        let Some(customer) = ack.customer.filter(|c| finals.contains_key(c)) else { continue };
        match at_end.get(seen.id.as_str()) {
            Some((owner, now, _)) if *owner == customer => {
                if now.total != seen.total
                    || (!now.items.is_empty() && sorted(&now.items) != sorted(&ordered_items(ack)))
                {
                    anomalies.push(Anomaly {
                        kind: Kind::Changed,
                        message: format!(
                            "order {} was acknowledged with total {} for {:?}, and is {} for {:?} at the end",
                            seen.id,
                            seen.total,
                            ordered_items(ack),
                            now.total,
                            now.items
                        ),
                        ops: vec![ack.op, finals[&customer].op],
                    });
                }
            }
            _ => anomalies.push(Anomaly {
                kind: Kind::Lost,
                message: format!(
                    "order {} acknowledged to customer {customer} at {:.0} ms is not among their orders at the end",
                    seen.id, ack.end
                ),
                ops: vec![ack.op, finals[&customer].op],
            }),
        }
    }

    // The generator's products: the first stock minus the units PAID.
    for (product, (created, stock)) in &products {
        match final_stock.get(product) {
            Some((op, now)) => {
                let expected = stock - sold.get(product).copied().unwrap_or(0);
                if *now != expected {
                    anomalies.push(Anomaly {
                        kind: Kind::Stock,
                        message: format!(
                            "product {product} has {now} in stock, not {expected} ({stock} - {} units PAID)",
                            stock - expected
                        ),
                        ops: vec![*created, *op],
                    });
                }
            }
            None => anomalies.push(Anomaly {
                kind: Kind::Unread,
                message: format!("product {product}'s final stock was never read"),
                ops: vec![*created],
            }),
        }
    }

    anomalies.sort_by(|a, b| (a.kind, &a.ops).cmp(&(b.kind, &b.ops)));
    verdict.anomalies = anomalies;
    verdict
}

/// Each order of a customer charged as its status says, and no payment for another.
fn check_payments(
    customer: usize,
    op: u64,
    orders: &[Seen],
    payments: &[crate::history::Payment],
    anomalies: &mut Vec<Anomaly>,
) {
    let mut charges: HashMap<&str, (usize, usize)> = HashMap::new();
    for payment in payments {
        let (standing, refunded) = charges.entry(&payment.order).or_default();
        match payment.status.as_str() {
            "SUCCEEDED" => *standing += 1,
            "REFUNDED" => *refunded += 1,
            _ => {}
        }
    }
    let mut problem = |kind, message: String| anomalies.push(Anomaly { kind, message, ops: vec![op] });
    for seen in orders {
        let (standing, refunded) = charges.remove(seen.id.as_str()).unwrap_or_default();
        if standing + refunded > 1 {
            problem(
                Kind::DoubleCharge,
                format!("order {} was charged {} times ({refunded} refunded)", seen.id, standing + refunded),
            );
        } else if seen.status == Status::Paid && standing != 1 {
            problem(Kind::PaidNotCharged, format!("order {} is PAID but has no standing charge", seen.id));
        } else if seen.status == Status::Cancelled && standing != 0 {
            problem(Kind::CancelledButCharged, format!("order {} is CANCELLED but its charge stands", seen.id));
        }
    }
    let mut stray: Vec<&str> = charges.into_iter().filter(|(_, (s, r))| s + r > 0).map(|(order, _)| order).collect();
    stray.sort_unstable();
    for order in stray {
        problem(
            Kind::StrayPayment,
            format!("customer {customer} was charged for order {order}, which they do not have"),
        );
    }
}

fn ordered_items(entry: &Entry) -> Vec<Item> {
    match &entry.call {
        Call::Order { items, .. } => items.clone(),
        _ => Vec::new(),
    }
}

fn sorted(items: &[Item]) -> Vec<(&str, i64)> {
    let mut items: Vec<(&str, i64)> = items.iter().map(|i| (i.product.as_str(), i.quantity)).collect();
    items.sort_unstable();
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Payment;

    /// A history written by hand: each call completes 1 ms after the last one.
    #[derive(Default)]
    struct Script {
        entries: Vec<Entry>,
    }

    impl Script {
        fn add(&mut self, customer: Option<usize>, status: &str, call: Call) -> u64 {
            let op = self.entries.len() as u64;
            let start = op as f64 * 10.0;
            let outcome = Outcome::of(status);
            self.entries.push(Entry { op, start, end: start + 5.0, customer, status: status.into(), outcome, call });
            op
        }

        /// Two customers with 1,000 each, a product of 100 units; customer 0 orders 2 units
        /// (600) that are PAID, customer 1 orders 1 unit that is cancelled (charged, refunded).
        fn good() -> Self {
            let mut s = Script::default();
            for c in 0..2 {
                s.add(Some(c), "201", Call::Customer { user: format!("u{c}") });
                s.add(Some(c), "200", Call::TopUp { amount: 1000, balance: 1000 });
            }
            s.add(None, "201", Call::Product { product: "p".into(), stock: 100 });
            s.order(0, "a", 2, Status::PendingPayment);
            s.add(Some(0), "200", Call::Read { order: "a".into(), seen: Some(seen("a", 2, Status::Paid)) });
            s.order(1, "b", 1, Status::PendingPayment);
            s.add(Some(1), "200", Call::Cancel { order: "b".into(), seen: Some(seen("b", 1, Status::Cancelled)) });
            s.finals(0, vec![seen("a", 2, Status::Paid)], vec![pay("a", "SUCCEEDED", 600)], 400);
            s.finals(1, vec![seen("b", 1, Status::Cancelled)], vec![pay("b", "REFUNDED", 300)], 1000);
            s.add(None, "200", Call::FinalStock { product: "p".into(), stock: 98 });
            s
        }

        fn order(&mut self, customer: usize, id: &str, quantity: i64, status: Status) -> u64 {
            let items = vec![Item { product: "p".into(), quantity }];
            let seen = Some(seen(id, quantity, status));
            self.add(Some(customer), "201", Call::Order { key: format!("key-{id}"), items, seen })
        }

        fn finals(&mut self, customer: usize, orders: Vec<Seen>, payments: Vec<Payment>, balance: i64) -> u64 {
            self.add(Some(customer), "200", Call::Final { orders, payments, balance })
        }

        /// Replaces the final state of `customer`.
        fn final_of(&mut self, customer: usize) -> (&mut Vec<Seen>, &mut Vec<Payment>, &mut i64) {
            let entry = self
                .entries
                .iter_mut()
                .find(|e| e.customer == Some(customer) && matches!(e.call, Call::Final { .. }))
                .unwrap();
            let Call::Final { orders, payments, balance } = &mut entry.call else { unreachable!() };
            (orders, payments, balance)
        }

        fn kinds(&self) -> Vec<Kind> {
            check(&self.entries).anomalies.iter().map(|a| a.kind).collect()
        }
    }

    fn seen(id: &str, quantity: i64, status: Status) -> Seen {
        Seen { id: id.into(), status, total: 300 * quantity, items: vec![Item { product: "p".into(), quantity }] }
    }

    fn pay(order: &str, status: &str, amount: i64) -> Payment {
        Payment { order: order.into(), status: status.into(), amount }
    }

    #[test]
    fn a_history_that_keeps_every_promise_has_no_anomaly() {
        let verdict = check(&Script::good().entries);
        assert_eq!(verdict.anomalies, [], "{}", verdict.report());
        assert_eq!((verdict.acknowledged, verdict.paid, verdict.cancelled, verdict.customers), (2, 1, 1, 2));
        assert!(verdict.observations >= 2, "{verdict:?}");
        assert!(verdict.report().contains("anomalies: none"));
    }

    #[test]
    fn an_acknowledged_order_missing_at_the_end_is_lost() {
        let mut s = Script::good();
        let (orders, payments, balance) = s.final_of(0);
        orders.clear();
        payments.clear();
        *balance = 1000;
        s.entries.retain(|e| !matches!(e.call, Call::FinalStock { .. }));
        s.add(None, "200", Call::FinalStock { product: "p".into(), stock: 100 });
        assert_eq!(s.kinds(), [Kind::Lost]);
    }

    #[test]
    fn an_order_still_pending_at_the_end_is_unsettled() {
        let mut s = Script::good();
        let (orders, payments, balance) = s.final_of(1);
        orders[0].status = Status::PendingPayment;
        payments.clear();
        *balance = 1000;
        // The read before the end showed it CANCELLED: it went back, too.
        assert_eq!(s.kinds(), [Kind::Unsettled, Kind::WentBack]);
    }

    #[test]
    fn an_order_that_moves_backwards_or_between_ends_went_back() {
        let mut s = Script::good();
        s.add(Some(0), "200", Call::Read { order: "a".into(), seen: Some(seen("a", 2, Status::PendingPayment)) });
        assert_eq!(s.kinds(), [Kind::WentBack]);

        let mut s = Script::good();
        s.add(Some(1), "200", Call::Read { order: "b".into(), seen: Some(seen("b", 1, Status::Paid)) });
        let verdict = check(&s.entries);
        assert_eq!(verdict.anomalies.len(), 1, "{}", verdict.report());
        assert!(verdict.anomalies[0].message.contains("Cancelled"), "{}", verdict.report());
    }

    #[test]
    fn answers_that_overlap_in_time_may_disagree() {
        let mut s = Script::good();
        // A read that began before the PAID read ended may still see the order pending.
        let paid_read = s.entries.iter().find(|e| matches!(e.call, Call::Read { .. })).unwrap().clone();
        let op =
            s.add(Some(0), "200", Call::Read { order: "a".into(), seen: Some(seen("a", 2, Status::PendingPayment)) });
        s.entries[op as usize].start = paid_read.end - 1.0;
        assert_eq!(s.kinds(), []);
    }

    #[test]
    fn a_404_after_the_acknowledgement_breaks_read_your_writes() {
        let mut s = Script::good();
        s.add(Some(0), "404", Call::Read { order: "a".into(), seen: None });
        assert_eq!(s.kinds(), [Kind::ReadYourWrites]);
    }

    #[test]
    fn an_order_no_request_could_have_made_is_a_phantom_unless_a_request_got_no_answer() {
        let mut s = Script::good();
        let (orders, _, _) = s.final_of(1);
        orders.push(seen("ghost", 1, Status::Cancelled));
        assert_eq!(s.kinds(), [Kind::Phantom]);

        let mut s = Script::good();
        let (orders, _, _) = s.final_of(1);
        orders.push(seen("ghost", 1, Status::Cancelled));
        let items = vec![Item { product: "p".into(), quantity: 1 }];
        s.add(Some(1), "504", Call::Order { key: "key-ghost".into(), items, seen: None });
        assert_eq!(s.kinds(), []);
    }

    #[test]
    fn an_order_that_changed_after_its_acknowledgement_is_reported() {
        let mut s = Script::good();
        let (orders, _, _) = s.final_of(1);
        orders[0].total = 1;
        assert_eq!(s.kinds(), [Kind::Changed]);
    }

    #[test]
    fn charges_must_match_each_orders_status() {
        let mut s = Script::good();
        s.final_of(0).1.push(pay("a", "SUCCEEDED", 600));
        assert!(s.kinds().contains(&Kind::DoubleCharge), "{:?}", s.kinds());

        let mut s = Script::good();
        s.final_of(0).1.clear();
        assert!(s.kinds().contains(&Kind::PaidNotCharged), "{:?}", s.kinds());

        let mut s = Script::good();
        s.final_of(1).1[0].status = "SUCCEEDED".into();
        assert!(s.kinds().contains(&Kind::CancelledButCharged), "{:?}", s.kinds());

        let mut s = Script::good();
        s.final_of(1).1.push(pay("elsewhere", "SUCCEEDED", 5));
        assert!(s.kinds().contains(&Kind::StrayPayment), "{:?}", s.kinds());
    }

    #[test]
    fn a_wallet_off_its_top_ups_and_paid_orders_is_reported() {
        let mut s = Script::good();
        *s.final_of(1).2 = 700;
        let verdict = check(&s.entries);
        assert_eq!(verdict.anomalies.len(), 1, "{}", verdict.report());
        assert_eq!(verdict.anomalies[0].kind, Kind::Wallet);
        assert!(verdict.anomalies[0].message.contains("holds 700, not 1000"), "{}", verdict.report());
    }

    #[test]
    fn stock_off_the_units_paid_is_reported() {
        let mut s = Script::good();
        // A reservation never released: one unit held though its order is CANCELLED.
        for entry in &mut s.entries {
            if let Call::FinalStock { stock, .. } = &mut entry.call {
                *stock = 97;
            }
        }
        assert_eq!(s.kinds(), [Kind::Stock]);
    }

    #[test]
    fn a_final_state_never_read_cannot_pass() {
        let mut s = Script::good();
        s.entries.retain(|e| !matches!(e.call, Call::Final { .. } | Call::FinalStock { .. }));
        assert_eq!(s.kinds(), [Kind::Unread, Kind::Unread, Kind::Unread]);
    }

    #[test]
    fn a_report_names_each_anomaly_with_its_operations() {
        let mut s = Script::good();
        let read = s.add(Some(0), "404", Call::Read { order: "a".into(), seen: None });
        let report = check(&s.entries).report();
        assert!(report.contains("anomalies: 1 (read-your-writes 1)"), "{report}");
        assert!(report.contains(&format!("[ops 5, {read}]")), "{report}");
    }
}
