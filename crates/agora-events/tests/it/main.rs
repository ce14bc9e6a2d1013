//! The outbox, relay and consumer against real databases (SQLite and PostgreSQL) and the
//! in-process bus.

mod kafka;
mod kafka_cluster;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use agora_events::{
    BusError, ConsumerOptions, DomainEvent, EventBus, EventTx, Handler, HandlerError, LocalBus, Outbox,
    OutgoingMessage, Relay, Subscription, apply,
    consumer::{ATTEMPTS_HEADER, ERROR_HEADER},
    outbox, run_consumer, topics,
};
use agora_kit::{
    db::{self, Db, Migrations},
    testing::{TestDatabase, eventually},
    trace_context::{self, TraceParent},
};
use agora_proto::events::{EventEnvelope, OrderPlaced};
use async_trait::async_trait;
use prost::Message;
use sqlx::migrate::Migrator;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

static EFFECTS: Migrator = sqlx::migrate!("tests/it/migrations");

async fn database(test_db: &TestDatabase) -> Db {
    let db = db::connect(&test_db.url, Migrations::portable(&EFFECTS)).await.unwrap();
    agora_events::schema::ensure(&db).await.unwrap();
    db
}

/// Writes `n` OrderPlaced events for order ids `o0..o{n-1}`, each in its own transaction.
async fn enqueue(db: &Db, n: usize) {
    enqueue_orders(db, 0..n).await;
}

/// Writes an OrderPlaced event for each order id `o{i}`, `i` in `orders`, each in its own
/// transaction.
async fn enqueue_orders(db: &Db, orders: std::ops::Range<usize>) {
    let outbox = Outbox::without_relay(db.clone());
    for i in orders {
        let mut tx = outbox.begin().await.unwrap();
        let event = OrderPlaced { order_id: format!("o{i}"), ..Default::default() };
        tx.enqueue(&event.order_id, &event).await.unwrap();
        tx.commit().await.unwrap();
    }
}

/// True when `relay` was woken (a permit is waiting), false after a short wait without one.
async fn woken(relay: &Notify) -> bool {
    tokio::time::timeout(Duration::from_millis(200), relay.notified()).await.is_ok()
}

async fn a_committed_event_wakes_the_relay_and_a_rolled_back_one_vanishes(test_db: TestDatabase) {
    let db = database(&test_db).await;
    let relay = Arc::new(Notify::new());
    let outbox = Outbox::new(db.clone(), relay.clone());

    let mut tx = outbox.begin().await.unwrap();
    tx.enqueue("o1", &OrderPlaced { order_id: "o1".into(), ..Default::default() }).await.unwrap();
    assert!(!woken(&relay).await, "nothing to publish before the commit");
    tx.commit().await.unwrap();
    assert!(woken(&relay).await, "the commit wakes the relay");
    assert_eq!(outbox::backlog(&db.pool).await.unwrap(), 1);

    let mut tx = outbox.begin().await.unwrap();
    tx.enqueue("o2", &OrderPlaced { order_id: "o2".into(), ..Default::default() }).await.unwrap();
    drop(tx);
    assert!(!woken(&relay).await, "a rollback wakes nobody");
    assert_eq!(outbox::backlog(&db.pool).await.unwrap(), 1, "the rolled-back event is gone with its transaction");

    let tx = outbox.begin().await.unwrap();
    tx.commit().await.unwrap();
    assert!(!woken(&relay).await, "a transaction without events wakes nobody");
}

fn order_ids(messages: &[OutgoingMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            let env = EventEnvelope::decode(m.payload.as_slice()).unwrap();
            OrderPlaced::decode(env.payload.as_slice()).unwrap().order_id
        })
        .collect()
}

/// The real bus behind a switch that makes publishes fail, as a broker outage would.
#[derive(Debug)]
struct Flaky {
    inner: LocalBus,
    /// Publishes allowed before the outage starts.
    budget: AtomicUsize,
    /// When set, the message *is* stored but the caller sees an error (a lost ack).
    lose_ack: bool,
}

#[async_trait]
impl EventBus for Flaky {
    async fn publish(&self, message: &OutgoingMessage) -> Result<(), BusError> {
        if self.budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1)).is_err() {
            if self.lose_ack {
                self.inner.publish(message).await?;
            }
            return Err(BusError::Unavailable("injected outage".into()));
        }
        self.inner.publish(message).await
    }

    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>, BusError> {
        self.inner.subscribe(group, topic).await
    }
}

async fn relay_publishes_every_row_once_in_order(test_db: TestDatabase) {
    let db = database(&test_db).await;
    enqueue(&db, 7).await;
    let bus = LocalBus::in_memory().await.unwrap();
    let relay = Relay::new(db.clone(), Arc::new(bus.clone()));
    assert_eq!(relay.publish_batch().await.unwrap(), 7);
    assert_eq!(relay.publish_batch().await.unwrap(), 0, "marked rows are not published again");
    assert_eq!(outbox::backlog(&db.pool).await.unwrap(), 0);
    let published = bus.messages(topics::ORDERS).await.unwrap();
    assert_eq!(order_ids(&published), (0..7).map(|i| format!("o{i}")).collect::<Vec<_>>());
    assert_eq!(published[3].key, "o3", "the aggregate id is the partition key");
}

async fn relay_stopped_mid_batch_loses_nothing(test_db: TestDatabase) {
    let db = database(&test_db).await;
    enqueue(&db, 10).await;
    let bus = LocalBus::in_memory().await.unwrap();
    let flaky = Arc::new(Flaky { inner: bus.clone(), budget: AtomicUsize::new(4), lose_ack: false });
    let err = Relay::new(db.clone(), flaky).publish_batch().await.unwrap_err();
    assert!(err.to_string().contains("injected outage"), "{err}");
    assert_eq!(outbox::backlog(&db.pool).await.unwrap(), 6);

    // A new relay (as after a restart) finishes the job.
    let relay = Relay::new(db.clone(), Arc::new(bus.clone()));
    assert_eq!(relay.publish_batch().await.unwrap(), 6);
    let ids = order_ids(&bus.messages(topics::ORDERS).await.unwrap());
    assert_eq!(ids, (0..10).map(|i| format!("o{i}")).collect::<Vec<_>>(), "every event exactly once, in order");
}

/// Applies OrderPlaced by inserting into `effects`, in the transaction the consumer claimed
/// the event in, as the services' handlers do.
#[derive(Default)]
struct RecordEffect {
    calls: AtomicUsize,
}

#[async_trait]
impl Handler for RecordEffect {
    fn handles(&self) -> &[&'static str] {
        &[OrderPlaced::TYPE]
    }

    async fn handle(&self, tx: &mut EventTx, envelope: &EventEnvelope) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let placed = agora_events::decode::<OrderPlaced>(envelope)?;
        sqlx::query("INSERT INTO effects (event_id, order_id) VALUES ($1, $2)")
            .bind(&envelope.event_id)
            .bind(&placed.order_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

async fn effects(db: &Db) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM effects").fetch_one(&db.pool).await.unwrap()
}

async fn lost_acks_redeliver_but_apply_once(test_db: TestDatabase) {
    let db = database(&test_db).await;
    enqueue(&db, 3).await;
    let bus = LocalBus::in_memory().await.unwrap();
    // The third publish reaches the bus but its ack is lost: the relay publishes it again.
    let flaky = Arc::new(Flaky { inner: bus.clone(), budget: AtomicUsize::new(2), lose_ack: true });
    assert!(Relay::new(db.clone(), flaky).publish_batch().await.is_err());
    Relay::new(db.clone(), Arc::new(bus.clone())).publish_batch().await.unwrap();
    assert_eq!(bus.messages(topics::ORDERS).await.unwrap().len(), 4, "one duplicate on the bus");

    let handler = Arc::new(RecordEffect::default());
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(run_consumer(
        Arc::new(bus.clone()),
        ConsumerOptions::new("test-consumer", topics::ORDERS),
        Outbox::without_relay(db.clone()),
        handler.clone(),
        stop.clone(),
    ));
    eventually(5, "all four deliveries acknowledged", || {
        let bus = bus.clone();
        async move { (bus.lag("test-consumer", topics::ORDERS).await.unwrap() == 0).then_some(()) }
    })
    .await;
    stop.cancel();
    consumer.await.unwrap();
    assert_eq!(effects(&db).await, 3, "the duplicate changed nothing");
    assert_eq!(handler.calls.load(Ordering::SeqCst), 3, "its claim was taken: the handler never saw it");
}

async fn a_consumer_restarted_before_its_ack_applies_nothing_twice(test_db: TestDatabase) {
    let db = database(&test_db).await;
    let bus = LocalBus::in_memory().await.unwrap();
    enqueue(&db, 1).await;
    Relay::new(db.clone(), Arc::new(bus.clone())).publish_batch().await.unwrap();
    let handler = RecordEffect::default();
    let outbox = Outbox::without_relay(db.clone());

    // Effect committed, then the process dies before acknowledging.
    let mut sub = bus.subscribe("test-consumer", topics::ORDERS).await.unwrap();
    let delivery = sub.next().await.unwrap();
    let envelope = EventEnvelope::decode(delivery.payload.as_slice()).unwrap();
    assert!(apply(&outbox, "test-consumer", &handler, &envelope).await.unwrap(), "applied");
    drop(sub);

    let mut again = bus.subscribe("test-consumer", topics::ORDERS).await.unwrap();
    let redelivered = again.next().await.unwrap();
    assert_eq!(redelivered.offset, delivery.offset, "unacknowledged messages come back");
    let envelope = EventEnvelope::decode(redelivered.payload.as_slice()).unwrap();
    assert!(!apply(&outbox, "test-consumer", &handler, &envelope).await.unwrap(), "claimed already");
    assert_eq!(effects(&db).await, 1);
    // Another consumer group has a claim of its own.
    assert!(apply(&outbox, "audit-consumer", &handler, &envelope).await.unwrap());
    assert_eq!(effects(&db).await, 2);
}

/// Replicas of a service on one PostgreSQL database share its outbox: one relay publishes
/// (it holds the outbox's lease), the other stands by, and takes over when the first stops,
/// carrying on in order with nothing published twice.
#[tokio::test]
async fn of_two_replicas_one_publishes_the_outbox_and_the_other_takes_over_when_it_stops() {
    let Some(test_db) = TestDatabase::postgres().await else { return };
    // Each replica with its own pool, as two processes would have.
    let (db, other) = (database(&test_db).await, database(&test_db).await);
    let bus = LocalBus::in_memory().await.unwrap();
    let lease = "agora.outbox.replicated";
    let relay = |db: &Db| Relay::new(db.clone(), Arc::new(bus.clone())).named("replicated");
    let (first_stop, second_stop) = (CancellationToken::new(), CancellationToken::new());
    let first = tokio::spawn(relay(&db).run(first_stop.clone()));
    eventually(10, "the first relay to hold the lease", || async {
        db.try_lease(lease).await.unwrap().is_none().then_some(())
    })
    .await;
    let second = tokio::spawn(relay(&other).run(second_stop.clone()));

    enqueue(&db, 20).await;
    let published = |n: usize| {
        let bus = bus.clone();
        async move { bus.messages(topics::ORDERS).await.ok().filter(|m| m.len() >= n) }
    };
    eventually(10, "the first 20 events", || published(20)).await;
    first_stop.cancel();
    first.await.unwrap();

    // Written while nobody published: the second relay takes the lease and publishes them.
    enqueue_orders(&db, 20..30).await;
    let all = eventually(10, "the next 10 events, from the second relay", || published(30)).await;
    assert_eq!(order_ids(&all), (0..30).map(|i| format!("o{i}")).collect::<Vec<_>>(), "each once, in order");
    assert!(db.try_lease(lease).await.unwrap().is_none(), "the second relay holds the lease now");
    second_stop.cancel();
    second.await.unwrap();
    // The stopped relay closed its session; PostgreSQL frees the lock once it has seen it close.
    eventually(10, "a stopped relay to leave the lease free", || async {
        db.try_lease(lease).await.unwrap().map(drop)
    })
    .await;
}

/// Publishes an OrderPlaced event for each of `orders` straight to `bus`, in order.
async fn publish_orders(bus: &LocalBus, orders: &[&str]) {
    for order in orders {
        let placed = OrderPlaced { order_id: (*order).into(), ..Default::default() };
        let message = OutgoingMessage {
            topic: topics::ORDERS.into(),
            key: (*order).into(),
            payload: agora_events::event::envelope(order, &placed).encode_to_vec(),
            headers: Default::default(),
        };
        bus.publish(&message).await.unwrap();
    }
}

/// Runs `handler` as consumer group `group` of the orders topic on `bus`, in `db`'s outbox.
fn consume(
    bus: &LocalBus,
    db: &Db,
    group: &str,
    handler: Arc<dyn Handler>,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let options = ConsumerOptions { backoff: Duration::from_millis(5), ..ConsumerOptions::new(group, topics::ORDERS) };
    tokio::spawn(run_consumer(Arc::new(bus.clone()), options, Outbox::without_relay(db.clone()), handler, stop.clone()))
}

/// Applies OrderPlaced as [`RecordEffect`] does, except that the first attempt at order
/// "flaky" fails; records which orders it was called for, in order.
#[derive(Default)]
struct FailsOnce {
    calls: std::sync::Mutex<Vec<String>>,
}

#[async_trait]
impl Handler for FailsOnce {
    fn handles(&self) -> &[&'static str] {
        &[OrderPlaced::TYPE]
    }

    async fn handle(&self, tx: &mut EventTx, envelope: &EventEnvelope) -> Result<(), HandlerError> {
        let order_id = agora_events::decode::<OrderPlaced>(envelope)?.order_id;
        let first = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(order_id.clone());
            !calls[..calls.len() - 1].contains(&order_id)
        };
        if first && order_id == "flaky" {
            return Err(HandlerError::Retryable("not yet".into()));
        }
        sqlx::query("INSERT INTO effects (event_id, order_id) VALUES ($1, $2)")
            .bind(&envelope.event_id)
            .bind(&order_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// Events waiting together are applied in one transaction; when one of them fails, the
/// others' effects roll back with it and each is applied again alone, so every effect
/// happens once and the failing event gets its own retries.
async fn events_received_together_commit_together_and_one_failure_sends_each_alone(test_db: TestDatabase) {
    let db = database(&test_db).await;
    let bus = LocalBus::in_memory().await.unwrap();
    publish_orders(&bus, &["o0", "o1", "flaky", "o2"]).await;
    let handler = Arc::new(FailsOnce::default());
    let stop = CancellationToken::new();
    let consumer = consume(&bus, &db, "batch", handler.clone(), &stop);
    eventually(5, "the four events acknowledged", || {
        let bus = bus.clone();
        async move { (bus.lag("batch", topics::ORDERS).await.unwrap() == 0).then_some(()) }
    })
    .await;
    // Called again only because the first attempt's effects rolled back: had o0 and o1
    // committed on their own, their claims would have kept the handler from them.
    let calls = handler.calls.lock().unwrap().clone();
    assert_eq!(calls, ["o0", "o1", "flaky", "o0", "o1", "flaky", "o2"]);
    assert_eq!(effects(&db).await, 4, "each effect once");

    // The consumer goes on as before: later events are applied with one call each.
    publish_orders(&bus, &["o3", "o4"]).await;
    eventually(5, "the next two effects", || async { (effects(&db).await == 6).then_some(()) }).await;
    stop.cancel();
    consumer.await.unwrap();
    assert_eq!(handler.calls.lock().unwrap()[7..], ["o3", "o4"]);
}

/// Applies OrderPlaced by locking the row `lock-{order id}` of `effects` and recording the
/// effect. The first time it meets order "b" it waits for `gate` before taking the lock.
#[derive(Default)]
struct LocksRow {
    calls: std::sync::Mutex<Vec<String>>,
    gate: Notify,
    gated: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Handler for LocksRow {
    fn handles(&self) -> &[&'static str] {
        &[OrderPlaced::TYPE]
    }

    async fn handle(&self, tx: &mut EventTx, envelope: &EventEnvelope) -> Result<(), HandlerError> {
        let order_id = agora_events::decode::<OrderPlaced>(envelope)?.order_id;
        self.calls.lock().unwrap().push(order_id.clone());
        if order_id == "b" && !self.gated.swap(true, Ordering::SeqCst) {
            self.gate.notified().await;
        }
        sqlx::query("UPDATE effects SET order_id = order_id WHERE event_id = $1")
            .bind(format!("lock-{order_id}"))
            .execute(&mut **tx)
            .await?;
        sqlx::query("INSERT INTO effects (event_id, order_id) VALUES ($1, $2)")
            .bind(&envelope.event_id)
            .bind(&order_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// A consumer applying two events together locks their rows in the order they came; a request
/// that locks the same rows the other way round closes a cycle. The request has waited longer,
/// so PostgreSQL's deadlock check would fail it: the consumer gives way first, and goes one
/// event at a time.
#[tokio::test]
async fn a_lock_cycle_with_events_applied_together_fails_the_consumer_never_the_request() {
    let Some(test_db) = TestDatabase::postgres().await else { return };
    let db = database(&test_db).await;
    sqlx::query("INSERT INTO effects (event_id, order_id) VALUES ('lock-a', ''), ('lock-b', '')")
        .execute(&db.pool)
        .await
        .unwrap();
    let bus = LocalBus::in_memory().await.unwrap();
    publish_orders(&bus, &["a", "b"]).await;
    let handler = Arc::new(LocksRow::default());
    let stop = CancellationToken::new();
    let consumer = consume(&bus, &db, "locks", handler.clone(), &stop);
    // The consumer holds lock-a and is about to ask for lock-b.
    eventually(5, "the handler at order b", || async {
        handler.calls.lock().unwrap().contains(&"b".to_owned()).then_some(())
    })
    .await;

    // The request takes lock-b, then waits for lock-a; then the consumer asks for lock-b.
    let mut request = db.pool.begin().await.unwrap();
    sqlx::query("UPDATE effects SET order_id = order_id WHERE event_id = 'lock-b'")
        .execute(&mut *request)
        .await
        .unwrap();
    let waiting = tokio::spawn(async move {
        sqlx::query("UPDATE effects SET order_id = order_id WHERE event_id = 'lock-a'").execute(&mut *request).await?;
        request.commit().await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    handler.gate.notify_one();
    waiting.await.unwrap().expect("the request is not the one a lock cycle fails");

    eventually(10, "both effects", || async { (effects(&db).await == 4).then_some(()) }).await;
    stop.cancel();
    consumer.await.unwrap();
    assert_eq!(*handler.calls.lock().unwrap(), ["a", "b", "a", "b"], "together, then each alone");
}

agora_kit::db_tests!(
    events_received_together_commit_together_and_one_failure_sends_each_alone,
    a_committed_event_wakes_the_relay_and_a_rolled_back_one_vanishes,
    relay_publishes_every_row_once_in_order,
    relay_stopped_mid_batch_loses_nothing,
    lost_acks_redeliver_but_apply_once,
    a_consumer_restarted_before_its_ack_applies_nothing_twice,
);

struct AlwaysFails;

#[async_trait]
impl Handler for AlwaysFails {
    fn handles(&self) -> &[&'static str] {
        &[OrderPlaced::TYPE]
    }

    async fn handle(&self, _: &mut EventTx, envelope: &EventEnvelope) -> Result<(), HandlerError> {
        if envelope.aggregate_id == "poison" {
            Err(HandlerError::Retryable("downstream says no".into()))
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn poison_messages_reach_the_dead_letter_topic_and_the_rest_flows() {
    let bus = LocalBus::in_memory().await.unwrap();
    let publish = |key: &str, payload: Vec<u8>| OutgoingMessage {
        topic: topics::ORDERS.into(),
        key: key.into(),
        payload,
        headers: Default::default(),
    };
    let env = |id: &str| agora_events::event::envelope(id, &OrderPlaced { order_id: id.into(), ..Default::default() });
    bus.publish(&publish("poison", env("poison").encode_to_vec())).await.unwrap();
    bus.publish(&publish("garbage", vec![0xff, 0x01])).await.unwrap();
    bus.publish(&publish("fine", env("fine").encode_to_vec())).await.unwrap();

    let options = ConsumerOptions {
        max_attempts: 3,
        backoff: Duration::from_millis(5),
        ..ConsumerOptions::new("test-consumer", topics::ORDERS)
    };
    let stop = CancellationToken::new();
    let outbox = Outbox::without_relay(database(&TestDatabase::sqlite()).await);
    let consumer =
        tokio::spawn(run_consumer(Arc::new(bus.clone()), options, outbox, Arc::new(AlwaysFails), stop.clone()));
    let dlq = topics::dlq(topics::ORDERS);
    let dead = eventually(5, "two dead letters", || {
        let (bus, dlq) = (bus.clone(), dlq.clone());
        async move { Some(bus.messages(&dlq).await.unwrap()).filter(|m| m.len() == 2) }
    })
    .await;
    stop.cancel();
    consumer.await.unwrap();

    assert_eq!(dead[0].key, "poison");
    assert_eq!(dead[0].headers[ERROR_HEADER], "downstream says no");
    assert_eq!(dead[0].headers[ATTEMPTS_HEADER], "3");
    assert_eq!(dead[1].key, "garbage");
    assert_eq!(dead[1].headers[ATTEMPTS_HEADER], "1", "undecodable messages are not retried");
    assert!(dead[1].headers[ERROR_HEADER].contains("not an EventEnvelope"));

    // The group moved past all three: a restart starts after "fine".
    let mut sub = bus.subscribe("test-consumer", topics::ORDERS).await.unwrap();
    bus.publish(&publish("later", env("later").encode_to_vec())).await.unwrap();
    assert_eq!(sub.next().await.unwrap().key, "later");
    assert_eq!(OrderPlaced::TYPE, "agora.events.v1.OrderPlaced");
}

/// Records the trace context each handled event ran under.
#[derive(Default)]
struct TraceRecorder(std::sync::Mutex<Vec<Option<TraceParent>>>);

#[async_trait]
impl Handler for TraceRecorder {
    fn handles(&self) -> &[&'static str] {
        &[OrderPlaced::TYPE]
    }

    async fn handle(&self, _: &mut EventTx, _: &EventEnvelope) -> Result<(), HandlerError> {
        self.0.lock().unwrap().push(trace_context::current());
        Ok(())
    }
}

#[tokio::test]
async fn the_trace_context_travels_from_the_outbox_through_the_bus_to_the_handler() {
    let db = database(&TestDatabase::sqlite()).await;
    let bus = Arc::new(LocalBus::in_memory().await.unwrap());
    let request = TraceParent::root();
    trace_context::scope(request, enqueue(&db, 1)).await;
    enqueue(&db, 1).await; // outside any request: no trace to carry
    Relay::new(db.clone(), bus.clone()).publish_batch().await.unwrap();

    // The publish is a hop of the request's trace; a row written outside any request is
    // published in a trace of its own.
    let published = bus.messages(topics::ORDERS).await.unwrap();
    let header = |i: usize| TraceParent::parse(&published[i].headers[trace_context::TRACEPARENT]).unwrap();
    assert_eq!(header(0).trace_id, request.trace_id, "a transport header in the request's trace");
    assert_ne!(header(0).span_id, request.span_id, "naming the publish, a later hop");
    assert_ne!(header(1).trace_id, request.trace_id);

    let recorder = Arc::new(TraceRecorder::default());
    let stop = CancellationToken::new();
    let options = ConsumerOptions::new("trace-consumer", topics::ORDERS);
    let outbox = Outbox::without_relay(db.clone());
    let consumer = tokio::spawn(run_consumer(bus.clone(), options, outbox, recorder.clone(), stop.clone()));
    eventually(5, "both events handled", || async { (recorder.0.lock().unwrap().len() == 2).then_some(()) }).await;
    stop.cancel();
    consumer.await.unwrap();

    let seen = recorder.0.lock().unwrap().clone();
    let continued = seen[0].expect("the handler runs in a trace");
    assert_eq!(continued.trace_id, request.trace_id, "the same trace");
    assert_ne!(continued.span_id, request.span_id, "a new hop of it");
    assert_ne!(continued.span_id, header(0).span_id, "the handler is a hop after the publish");
    let fresh = seen[1].expect("an untraced event starts a trace");
    assert_eq!(fresh.trace_id, header(1).trace_id, "the publish's own trace");
}
