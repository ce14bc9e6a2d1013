//! The Kafka bus against a real broker (`scripts/kafka.sh`, which `make test` starts).
//! Every test uses its own topics and groups, so runs and tests never see each other's data.

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use agora_events::{
    ConsumerOptions, EventBus, KafkaBus, KafkaOptions, Outbox, OutgoingMessage, Relay, Subscription, apply,
    consumer::{ATTEMPTS_HEADER, ERROR_HEADER},
    outbox, run_consumer,
    testing::kafka_options,
    topics,
};
use agora_kit::testing::{TestDatabase, kafka_brokers};
use agora_proto::events::{EventEnvelope, OrderPlaced};
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::{AlwaysFails, RecordEffect, database, effects, enqueue};

fn bus(brokers: &str) -> KafkaBus {
    KafkaBus::new(kafka_options(brokers)).unwrap()
}

fn unique(name: &str) -> String {
    format!("test.{name}.{}", uuid::Uuid::new_v4().simple())
}

fn message(topic: &str, key: &str, body: &str) -> OutgoingMessage {
    let headers = BTreeMap::from([("traceparent".to_owned(), format!("00-{body}"))]);
    OutgoingMessage { topic: topic.to_owned(), key: key.to_owned(), payload: body.as_bytes().to_vec(), headers }
}

/// The next delivery, or a failure after `secs` (a rebalance can take a few seconds).
async fn next(sub: &mut Box<dyn Subscription>, secs: u64) -> agora_events::Delivery {
    tokio::time::timeout(Duration::from_secs(secs), sub.next()).await.expect("a message in time").unwrap()
}

#[tokio::test]
async fn messages_keep_their_key_payload_and_headers() {
    let Some(brokers) = kafka_brokers() else { return };
    let bus = bus(&brokers);
    let topic = unique("roundtrip");
    bus.publish(&message(&topic, "k1", "hello")).await.unwrap();
    let mut sub = bus.subscribe(&unique("group"), &topic).await.unwrap();
    let got = next(&mut sub, 30).await;
    assert_eq!((got.key.as_str(), got.payload.as_slice()), ("k1", b"hello".as_slice()));
    assert_eq!(got.headers["traceparent"], "00-hello");
}

#[tokio::test]
async fn a_groups_lag_in_messages_is_reported_per_partition() {
    let Some(brokers) = kafka_brokers() else { return };
    let bus = bus(&brokers);
    let (topic, group) = (unique("lag"), unique("group"));
    // One key: one partition.
    for i in 0..5 {
        bus.publish(&message(&topic, "k", &format!("m{i}"))).await.unwrap();
    }
    let mut sub = bus.subscribe(&group, &topic).await.unwrap();
    let first = next(&mut sub, 30).await;
    sub.ack(&first).await.unwrap();
    let second = next(&mut sub, 30).await;
    sub.ack(&second).await.unwrap();
    let labels = agora_kit::metrics::PartitionLabels { topic, group, partition: first.partition };
    let lag = || agora_kit::metrics::metrics().consumer_lag_messages.get_or_create(&labels).get();
    // Statistics arrive every 5 s; the subscription must keep polling to emit them.
    let polled = tokio::time::timeout(Duration::from_secs(30), async {
        while lag() != 3 {
            let _ = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "lag of 3 (5 published, 2 committed) reported; last seen {}", lag());
}

#[tokio::test]
async fn prefixed_buses_share_a_broker_without_seeing_each_other() {
    let Some(brokers) = kafka_brokers() else { return };
    let prefixed =
        |prefix: &str| KafkaBus::new(KafkaOptions { prefix: prefix.to_owned(), ..kafka_options(&brokers) }).unwrap();
    let (blue_prefix, green_prefix) = (unique("blue") + ".", unique("green") + ".");
    let (blue, green) = (prefixed(&blue_prefix), prefixed(&green_prefix));
    // The same topic name on both: each bus only sees its own message.
    blue.publish(&message("orders", "k", "blue")).await.unwrap();
    green.publish(&message("orders", "k", "green")).await.unwrap();
    let mut blue_sub = blue.subscribe("group", "orders").await.unwrap();
    let got = next(&mut blue_sub, 30).await;
    assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("orders", b"blue".as_slice()));
    blue_sub.ack(&got).await.unwrap();
    let mut green_sub = green.subscribe("group", "orders").await.unwrap();
    assert_eq!(next(&mut green_sub, 30).await.payload, b"green");

    // On the broker the topic carries the prefix, and the prefixed group's commit holds.
    let plain = bus(&brokers);
    let mut raw = plain.subscribe(&unique("group"), &format!("{blue_prefix}orders")).await.unwrap();
    assert_eq!(next(&mut raw, 30).await.payload, b"blue");
    blue.publish(&message("orders", "k", "blue-2")).await.unwrap();
    drop(blue_sub);
    let mut resumed = blue.subscribe("group", "orders").await.unwrap();
    assert_eq!(next(&mut resumed, 30).await.payload, b"blue-2", "the group resumes after its commit");
}

#[tokio::test]
async fn an_unacknowledged_message_is_delivered_again_to_the_next_member() {
    let Some(brokers) = kafka_brokers() else { return };
    let bus = bus(&brokers);
    let (topic, group) = (unique("redeliver"), unique("group"));
    for body in ["m0", "m1"] {
        bus.publish(&message(&topic, "one-key", body)).await.unwrap();
    }

    // A consumer that dies between its effect and its commit.
    let mut first = bus.subscribe(&group, &topic).await.unwrap();
    assert_eq!(next(&mut first, 30).await.payload, b"m0");
    drop(first);

    let mut second = bus.subscribe(&group, &topic).await.unwrap();
    let again = next(&mut second, 30).await;
    assert_eq!(again.payload, b"m0", "the uncommitted message comes back");
    second.ack(&again).await.unwrap();
    drop(second);

    let mut third = bus.subscribe(&group, &topic).await.unwrap();
    assert_eq!(next(&mut third, 30).await.payload, b"m1", "the committed one does not");
}

#[tokio::test]
async fn acknowledgements_close_together_are_committed_once_the_topic_goes_quiet() {
    let Some(brokers) = kafka_brokers() else { return };
    let bus = bus(&brokers);
    let (topic, group) = (unique("quiet"), unique("group"));
    for body in ["m0", "m1"] {
        bus.publish(&message(&topic, "one-key", body)).await.unwrap();
    }
    let mut first = bus.subscribe(&group, &topic).await.unwrap();
    for body in ["m0", "m1"] {
        let delivery = next(&mut first, 30).await;
        assert_eq!(delivery.payload, body.as_bytes());
        // m1's comes within 500 ms of m0's commit, so it is only stored.
        first.ack(&delivery).await.unwrap();
    }
    // Nothing more comes; waiting for it commits m1's offset.
    assert!(tokio::time::timeout(Duration::from_secs(2), first.next()).await.is_err(), "no third message");
    drop(first);

    bus.publish(&message(&topic, "one-key", "m2")).await.unwrap();
    let mut second = bus.subscribe(&group, &topic).await.unwrap();
    assert_eq!(next(&mut second, 30).await.payload, b"m2", "m1 is not delivered again");
}

#[tokio::test]
async fn one_keys_messages_keep_their_order_across_partitions() {
    let Some(brokers) = kafka_brokers() else { return };
    let bus = bus(&brokers);
    let topic = unique("order");
    let keys = ["order-a", "order-b", "order-c", "order-d"];
    for seq in 0..15 {
        for key in keys {
            bus.publish(&message(&topic, key, &seq.to_string())).await.unwrap();
        }
    }
    let mut sub = bus.subscribe(&unique("group"), &topic).await.unwrap();
    let mut seen: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut partitions = std::collections::BTreeSet::new();
    for _ in 0..keys.len() * 15 {
        let got = next(&mut sub, 30).await;
        partitions.insert(got.partition);
        seen.entry(got.key).or_default().push(String::from_utf8(got.payload).unwrap().parse().unwrap());
    }
    assert!(partitions.len() > 1, "the keys spread over several partitions: {partitions:?}");
    for key in keys {
        assert_eq!(seen[key], (0..15).collect::<Vec<_>>(), "{key} in order");
    }
}

#[tokio::test]
async fn the_relay_publishes_every_outbox_row_exactly_once() {
    let Some(brokers) = kafka_brokers() else { return };
    let db = database(&TestDatabase::sqlite()).await;
    // The relay writes to the real ORDERS topic; this run's orders carry their own prefix.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let writer = Outbox::without_relay(db.clone());
    for i in 0..20 {
        let mut tx = writer.begin().await.unwrap();
        let event = OrderPlaced { order_id: format!("{run}-{i}"), ..Default::default() };
        tx.enqueue(&event.order_id, &event).await.unwrap();
        tx.commit().await.unwrap();
    }
    let bus = Arc::new(bus(&brokers));
    let relay = Relay::new(db.clone(), bus.clone());
    assert_eq!(relay.publish_batch().await.unwrap(), 20);
    assert_eq!(relay.publish_batch().await.unwrap(), 0, "marked rows are not published again");
    assert_eq!(outbox::backlog(&db.pool).await.unwrap(), 0);

    let mut sub = bus.subscribe(&unique("group"), topics::ORDERS).await.unwrap();
    let mut ours = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ours.len() < 20 && tokio::time::Instant::now() < deadline {
        let got = next(&mut sub, 60).await;
        let envelope = EventEnvelope::decode(got.payload.as_slice()).unwrap();
        let order_id = OrderPlaced::decode(envelope.payload.as_slice()).unwrap().order_id;
        if order_id.starts_with(&run) {
            ours.push(order_id);
        }
    }
    ours.sort_by_key(|id| id.rsplit('-').next().unwrap().parse::<u32>().unwrap());
    assert_eq!(ours, (0..20).map(|i| format!("{run}-{i}")).collect::<Vec<_>>(), "each row exactly once");
}

#[tokio::test]
async fn a_batch_sent_all_at_once_keeps_one_aggregates_events_in_order() {
    let Some(brokers) = kafka_brokers() else { return };
    let db = database(&TestDatabase::sqlite()).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    // One aggregate (one key, so one partition), 60 events: the relay sends them together.
    let writer = Outbox::without_relay(db.clone());
    for i in 0..60 {
        let mut tx = writer.begin().await.unwrap();
        let event = OrderPlaced { order_id: format!("{run}-{i}"), ..Default::default() };
        tx.enqueue(&run, &event).await.unwrap();
        tx.commit().await.unwrap();
    }
    let bus = Arc::new(bus(&brokers));
    assert_eq!(Relay::new(db.clone(), bus.clone()).publish_batch().await.unwrap(), 60);

    let mut sub = bus.subscribe(&unique("group"), topics::ORDERS).await.unwrap();
    let mut ours = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ours.len() < 60 && tokio::time::Instant::now() < deadline {
        let got = next(&mut sub, 60).await;
        let envelope = EventEnvelope::decode(got.payload.as_slice()).unwrap();
        let order_id = OrderPlaced::decode(envelope.payload.as_slice()).unwrap().order_id;
        if order_id.starts_with(&run) {
            ours.push(order_id);
        }
    }
    assert_eq!(ours, (0..60).map(|i| format!("{run}-{i}")).collect::<Vec<_>>(), "in enqueue order, once each");
}

#[tokio::test]
async fn a_poison_message_reaches_the_dead_letter_topic_with_its_error() {
    let Some(brokers) = kafka_brokers() else { return };
    let bus = Arc::new(bus(&brokers));
    let topic = unique("poison");
    let envelope =
        |id: &str| agora_events::event::envelope(id, &OrderPlaced { order_id: id.into(), ..Default::default() });
    for key in ["poison", "fine"] {
        let body = OutgoingMessage {
            topic: topic.clone(),
            key: key.into(),
            payload: envelope(key).encode_to_vec(),
            headers: Default::default(),
        };
        bus.publish(&body).await.unwrap();
    }
    let options = ConsumerOptions {
        max_attempts: 3,
        backoff: Duration::from_millis(5),
        ..ConsumerOptions::new(&unique("group"), &topic)
    };
    let stop = CancellationToken::new();
    let outbox = Outbox::without_relay(database(&TestDatabase::sqlite()).await);
    let consumer = tokio::spawn(run_consumer(bus.clone(), options, outbox, Arc::new(AlwaysFails), stop.clone()));

    let mut dead = bus.subscribe(&unique("group"), &topics::dlq(&topic)).await.unwrap();
    let letter = next(&mut dead, 60).await;
    stop.cancel();
    consumer.await.unwrap();
    assert_eq!(letter.key, "poison");
    assert_eq!(letter.headers[ERROR_HEADER], "downstream says no");
    assert_eq!(letter.headers[ATTEMPTS_HEADER], "3");
}

#[tokio::test]
async fn a_consumer_killed_between_its_effect_and_its_commit_applies_nothing_twice() {
    let Some(brokers) = kafka_brokers() else { return };
    let db = database(&TestDatabase::sqlite()).await;
    // The outbox writes to the real topic names; a prefix keeps this test's copy apart.
    let options = KafkaOptions { prefix: unique("killed") + ".", ..kafka_options(&brokers) };
    let bus = Arc::new(KafkaBus::new(options).unwrap());
    enqueue(&db, 1).await;
    Relay::new(db.clone(), bus.clone()).publish_batch().await.unwrap();
    let handler = RecordEffect::default();
    let outbox = Outbox::without_relay(db.clone());
    let decode = |d: &agora_events::Delivery| EventEnvelope::decode(d.payload.as_slice()).unwrap();

    // The effect commits, then the consumer dies before committing its offset.
    let mut first = bus.subscribe("effects", topics::ORDERS).await.unwrap();
    let delivery = next(&mut first, 30).await;
    assert!(apply(&outbox, "effects", &handler, &decode(&delivery)).await.unwrap(), "applied");
    drop(first);

    let mut second = bus.subscribe("effects", topics::ORDERS).await.unwrap();
    let again = next(&mut second, 30).await;
    assert_eq!((again.partition, again.offset), (delivery.partition, delivery.offset), "the same message again");
    assert!(!apply(&outbox, "effects", &handler, &decode(&again)).await.unwrap(), "claimed already");
    second.ack(&again).await.unwrap();
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1, "the redelivery never reached the handler");
    assert_eq!(effects(&db).await, 1, "applied once");
}
