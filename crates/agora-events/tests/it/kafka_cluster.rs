//! The Kafka bus on a three-node cluster (`scripts/kafka-cluster.sh`): topics with three
//! replicas, a majority (2) taking each write, `acks=all` and an idempotent producer. The
//! node that leads the most of a topic's partitions is killed (SIGKILL) while events are
//! being published: every publish is still acknowledged, and every acknowledged event is
//! there, once, after the node comes back.

use std::{collections::HashMap, time::Duration};

use agora_events::{EventBus, KafkaBus, KafkaOptions, OutgoingMessage};
use agora_kit::testing::{PrivateInstance, kafka_brokers};
use rdkafka::{
    ClientConfig,
    consumer::{BaseConsumer, Consumer},
};
use tokio::time::Instant;

/// The broker id that leads the most partitions of `topic`.
fn busiest_leader(brokers: &str, topic: &str) -> i32 {
    let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let metadata = client.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let mut led: HashMap<i32, usize> = HashMap::new();
    for partition in metadata.topics()[0].partitions() {
        assert_eq!(partition.replicas().len(), 3, "partition {} has a replica on each node", partition.id());
        *led.entry(partition.leader()).or_default() += 1;
    }
    led.into_iter().max_by_key(|(_, n)| *n).expect("the topic has partitions").0
}

/// Publishes events `range` one after the other; each must be acknowledged. The slowest
/// acknowledgement.
async fn publish(bus: &KafkaBus, topic: &str, range: std::ops::Range<usize>) -> Duration {
    let mut slowest = Duration::ZERO;
    for i in range {
        let message = OutgoingMessage {
            topic: topic.to_owned(),
            key: format!("order-{}", i % 12),
            payload: format!("event-{i}").into_bytes(),
            headers: Default::default(),
        };
        let started = Instant::now();
        bus.publish(&message).await.unwrap_or_else(|e| panic!("event {i} was refused: {e}"));
        slowest = slowest.max(started.elapsed());
    }
    slowest
}

#[tokio::test]
async fn losing_the_busiest_node_loses_no_acknowledged_event_and_stops_no_producer() {
    // Kafka is part of this run (and installed) when the suite's broker is.
    if kafka_brokers().is_none() {
        return;
    }
    let cluster = PrivateInstance::kafka_cluster("ha");
    let brokers = cluster.output(&["brokers"]);
    let bus = KafkaBus::new(KafkaOptions { replication: 3, ..KafkaOptions::new(&brokers) }).unwrap();
    let topic = format!("test.ha.{}", uuid::Uuid::new_v4().simple());

    publish(&bus, &topic, 0..100).await;
    let victim = busiest_leader(&brokers, &topic);
    cluster.output(&["kill", &victim.to_string()]);
    let slowest = publish(&bus, &topic, 100..200).await;
    eprintln!("node {victim} killed: the slowest of 100 acknowledgements took {slowest:?}");
    cluster.output(&["start-member", &victim.to_string()]);
    publish(&bus, &topic, 200..300).await;

    let mut subscription = bus.subscribe(&format!("test.ha.{}", uuid::Uuid::new_v4().simple()), &topic).await.unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 300 {
        let delivery = tokio::time::timeout_at(deadline, subscription.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of 300 events came back within 60 s", seen.len()))
            .unwrap();
        *seen.entry(String::from_utf8(delivery.payload.clone()).unwrap()).or_default() += 1;
        subscription.ack(&delivery).await.unwrap();
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events delivered twice: {twice:?}");
    assert!((0..300).all(|i| seen.contains_key(&format!("event-{i}"))));
}
