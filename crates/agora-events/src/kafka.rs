//! Apache Kafka behind [`EventBus`]: an idempotent producer with `acks=all`, consumer groups
//! that commit an offset only when the consumer acknowledges, and topics created on first use
//! with a fixed partition count (the broker never auto-creates them).
//!
//! Keys pick the partition, so one aggregate's events keep their order however many
//! partitions a topic has. Headers travel as Kafka record headers.
//!
//! An optional prefix goes in front of every topic and consumer-group name on the broker, so
//! several deployments (or test runs) can share one cluster without seeing each other's
//! events. Callers never see it: they publish to and read from the unprefixed names.

use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    str::FromStr,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use futures::FutureExt as _;
use rdkafka::{
    ClientConfig, ClientContext, Message, Offset, Statistics, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer},
    error::KafkaError,
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
};
use secrecy::{ExposeSecret as _, SecretString};
use tracing::Instrument as _;

use agora_kit::metrics::PartitionLabels;

use crate::bus::{BusError, Delivery, EventBus, OutgoingMessage, Subscription};

/// How long a publish may wait for the broker's acknowledgement before it is reported as
/// failed; the relay then retries the row, and idempotence keeps the retry single.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Kafka settings.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Partitions of each topic Agora creates.
    pub partitions: i32,
    /// Replicas of each topic Agora creates (1 on a single broker, 3 on a cluster); a majority
    /// of them must have an event before it is acknowledged (`min.insync.replicas`).
    pub replication: i32,
    /// Put in front of every topic and consumer-group name on the broker (e.g. `staging.`).
    pub prefix: String,
    /// How the clients authenticate and protect their traffic.
    pub security: KafkaSecurity,
}

impl KafkaOptions {
    pub fn new(brokers: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            partitions: 3,
            replication: 1,
            prefix: String::new(),
            security: KafkaSecurity::default(),
        }
    }

    /// A client configuration with the brokers and the security settings: what every
    /// producer, consumer and admin client here starts from.
    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        self.security.apply(&mut config);
        config
    }
}

/// How Agora's Kafka clients meet the brokers: in the clear (a private network, the embedded
/// and test setups), over TLS, or over TLS with SASL credentials (what managed Kafka offers),
/// each optionally with a client certificate (mutual TLS).
///
/// A certificate renewed on disk is read when a client is created, that is on the next start:
/// librdkafka reads its files once.
#[derive(Debug, Clone, Default)]
pub struct KafkaSecurity {
    pub protocol: KafkaProtocol,
    /// The SASL mechanism and credentials, with [`KafkaProtocol::SaslSsl`].
    pub sasl: Option<KafkaSasl>,
    /// The CA certificate(s) (PEM) that sign the brokers' certificates [default: the system's].
    pub ca: Option<PathBuf>,
    /// This client's certificate and key (PEM), for brokers that require one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl KafkaSecurity {
    /// Settings that cannot work together, as a message that names the flag to change: SASL
    /// credentials in the clear, TLS files without TLS, `sasl-ssl` without credentials.
    pub fn check(&self) -> Result<(), String> {
        match self.protocol {
            KafkaProtocol::Plaintext if self.sasl.is_some() => Err(
                "--kafka-sasl-username needs --kafka-security sasl-ssl (SASL credentials never travel in the clear)"
                    .to_owned(),
            ),
            KafkaProtocol::Plaintext if self.ca.is_some() || self.client_cert.is_some() => {
                Err("--kafka-tls-ca and --kafka-tls-cert need --kafka-security ssl or sasl-ssl".to_owned())
            }
            KafkaProtocol::Ssl if self.sasl.is_some() => {
                Err("--kafka-sasl-username needs --kafka-security sasl-ssl, not ssl".to_owned())
            }
            KafkaProtocol::SaslSsl if self.sasl.is_none() => {
                Err("--kafka-security sasl-ssl needs --kafka-sasl-username and --kafka-sasl-password".to_owned())
            }
            _ => Ok(()),
        }
    }

    /// librdkafka's properties for these settings. The broker's certificate is checked
    /// against its host name (librdkafka's default, set here so that it stays so).
    fn apply(&self, config: &mut ClientConfig) {
        config.set("security.protocol", self.protocol.librdkafka());
        if self.protocol == KafkaProtocol::Plaintext {
            return;
        }
        config.set("ssl.endpoint.identification.algorithm", "https");
        // Without a CA of its own, librdkafka looks where the system keeps its bundle ("probe"),
        // not only in OpenSSL's compiled-in directory, which a slim image lacks.
        let ca = self.ca.as_ref().map_or_else(|| "probe".to_owned(), |ca| ca.display().to_string());
        config.set("ssl.ca.location", ca);
        if let Some((cert, key)) = &self.client_cert {
            config.set("ssl.certificate.location", cert.display().to_string());
            config.set("ssl.key.location", key.display().to_string());
        }
        if let Some(sasl) = &self.sasl {
            config.set("sasl.mechanisms", sasl.mechanism.librdkafka());
            config.set("sasl.username", &sasl.username);
            config.set("sasl.password", sasl.password.expose_secret());
        }
    }
}

/// The protocol of the brokers' listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KafkaProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslSsl,
}

impl KafkaProtocol {
    /// The names a setting takes.
    pub const NAMES: [&str; 3] = ["plaintext", "ssl", "sasl-ssl"];

    fn librdkafka(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslSsl => "sasl_ssl",
        }
    }
}

impl FromStr for KafkaProtocol {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "plaintext" => Ok(Self::Plaintext),
            "ssl" => Ok(Self::Ssl),
            "sasl-ssl" => Ok(Self::SaslSsl),
            other => Err(format!("'{other}' is not a Kafka security protocol ({})", Self::NAMES.join(", "))),
        }
    }
}

/// SASL credentials; the password never shows in `Debug`.
#[derive(Clone)]
pub struct KafkaSasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: SecretString,
}

impl std::fmt::Debug for KafkaSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSasl").field("mechanism", &self.mechanism).field("username", &self.username).finish()
    }
}

/// The SASL mechanisms Agora offers: SCRAM (the password never crosses the wire) and PLAIN
/// (for brokers that check passwords elsewhere; TLS protects it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SaslMechanism {
    #[default]
    ScramSha512,
    ScramSha256,
    Plain,
}

impl SaslMechanism {
    /// The names a setting takes.
    pub const NAMES: [&str; 3] = ["scram-sha-512", "scram-sha-256", "plain"];

    fn librdkafka(self) -> &'static str {
        match self {
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::Plain => "PLAIN",
        }
    }
}

impl FromStr for SaslMechanism {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "scram-sha-512" => Ok(Self::ScramSha512),
            "scram-sha-256" => Ok(Self::ScramSha256),
            "plain" => Ok(Self::Plain),
            other => Err(format!("'{other}' is not a SASL mechanism ({})", Self::NAMES.join(", "))),
        }
    }
}

pub struct KafkaBus {
    options: KafkaOptions,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Topics known to exist, so each is created (or found) once per process.
    topics: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus").field("options", &self.options).finish_non_exhaustive()
    }
}

impl KafkaBus {
    /// A bus on `options.brokers`. Connections are made lazily; the first call that needs
    /// the broker fails with `Unavailable` while it is down.
    pub fn new(options: KafkaOptions) -> Result<Self, BusError> {
        options.security.check().map_err(BusError::Unavailable)?;
        let producer: FutureProducer = options
            .client()
            // Retries after a lost acknowledgement must not write the record twice.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string())
            .set("linger.ms", "5")
            .create()
            .map_err(unavailable)?;
        let admin = options.client().create().map_err(unavailable)?;
        Ok(Self { options, producer, admin, topics: Mutex::default() })
    }

    /// The broker-side name of `name` (a topic or a group).
    fn scoped(&self, name: &str) -> String {
        format!("{}{name}", self.options.prefix)
    }

    /// Creates `topic` (an unprefixed name) if it does not exist yet.
    pub async fn ensure_topic(&self, topic: &str) -> Result<(), BusError> {
        let topic = &self.scoped(topic);
        if self.topics.lock().expect("the topic set lock is never poisoned").contains(topic) {
            return Ok(());
        }
        // A majority of the replicas must have each write before `acks=all` acknowledges it,
        // so losing a minority of brokers loses no acknowledged event and stops no producer.
        let majority = (self.options.replication / 2 + 1).to_string();
        let new = NewTopic::new(topic, self.options.partitions, TopicReplication::Fixed(self.options.replication))
            .set("min.insync.replicas", &majority);
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = self.admin.create_topics([&new], &options).await.map_err(unavailable)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(BusError::Unavailable(format!("cannot create topic {name}: {code}"))),
            }
        }
        self.topics.lock().expect("the topic set lock is never poisoned").insert(topic.to_owned());
        Ok(())
    }
}

impl KafkaBus {
    /// Every message `topic` (an unprefixed name) holds now, partition by partition, without
    /// joining a consumer group or moving any group's offsets; none when the topic does not
    /// exist. For inspection (the dead-letter topics after a run), not for consuming.
    pub async fn read_topic(&self, topic: &str) -> Result<Vec<Delivery>, BusError> {
        let (client, scoped, prefix) = (self.options.client(), self.scoped(topic), self.options.prefix.clone());
        tokio::task::spawn_blocking(move || read_topic_blocking(client, &scoped, &prefix))
            .await
            .map_err(|e| BusError::Unavailable(format!("reading {topic} stopped: {e}")))?
    }
}

fn read_topic_blocking(mut client: ClientConfig, topic: &str, prefix: &str) -> Result<Vec<Delivery>, BusError> {
    const WAIT: Duration = Duration::from_secs(10);
    let consumer: BaseConsumer = client
        .set("group.id", format!("agora-inspect-{}", uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(unavailable)?;
    let metadata = consumer.fetch_metadata(Some(topic), WAIT).map_err(unavailable)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic && t.error().is_none()) else {
        return Ok(Vec::new());
    };
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0_i64;
    let mut ends = BTreeMap::new();
    for partition in found.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, partition.id(), WAIT).map_err(unavailable)?;
        if high > low {
            assignment.add_partition_offset(topic, partition.id(), Offset::Offset(low)).map_err(unavailable)?;
            ends.insert(partition.id(), high);
            remaining += high - low;
        }
    }
    let mut read = Vec::new();
    if remaining == 0 {
        return Ok(read);
    }
    consumer.assign(&assignment).map_err(unavailable)?;
    let deadline = std::time::Instant::now() + WAIT;
    while remaining > 0 {
        if std::time::Instant::now() >= deadline {
            return Err(BusError::Unavailable(format!("{topic}: {remaining} messages not read within {WAIT:?}")));
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else { continue };
        let message = message.map_err(unavailable)?;
        if ends.get(&message.partition()).is_some_and(|end| message.offset() < *end) {
            remaining -= 1;
            read.push(delivery(&message, prefix));
        }
    }
    Ok(read)
}

/// A received Kafka record as a [`Delivery`] (topic without the prefix, headers as text).
fn delivery(message: &impl Message, prefix: &str) -> Delivery {
    let mut headers = BTreeMap::new();
    if let Some(kafka_headers) = message.headers() {
        for header in kafka_headers.iter() {
            let value = header.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
            headers.insert(header.key.to_owned(), value);
        }
    }
    Delivery {
        topic: message.topic().strip_prefix(prefix).unwrap_or(message.topic()).to_owned(),
        key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
        offset: message.offset(),
        partition: message.partition(),
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    fn system(&self) -> &'static str {
        "kafka"
    }

    async fn publish(&self, message: &OutgoingMessage) -> Result<(), BusError> {
        self.ensure_topic(&message.topic).await?;
        let headers = message
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| headers.insert(Header { key, value: Some(value) }));
        let topic = self.scoped(&message.topic);
        let record = FutureRecord::to(&topic).key(&message.key).payload(&message.payload).headers(headers);
        self.producer.send(record, DELIVERY_TIMEOUT).await.map(|_| ()).map_err(|(e, _)| match e {
            KafkaError::MessageProduction(code) if is_permanent(code) => BusError::Rejected(code.to_string()),
            other => unavailable(other),
        })
    }

    /// All at once: librdkafka batches them (`linger.ms`), and the idempotent producer keeps
    /// each partition's order with several requests in flight. One at a time, the relay
    /// waited a linger and a round trip per event, which capped the saga near 100 orders/s.
    ///
    /// The topics are made sure of first, one after the other. Left to each send, a cold
    /// topic cache let the sends wait on their own topic creations, finish those in any
    /// order, and so enqueue one key's events out of order (a test caught it).
    async fn publish_all(&self, messages: Vec<(OutgoingMessage, tracing::Span)>) -> Vec<Result<(), BusError>> {
        let mut topics: Vec<&str> = messages.iter().map(|(m, _)| m.topic.as_str()).collect();
        topics.dedup();
        for topic in topics {
            if let Err(e) = self.ensure_topic(topic).await {
                return vec![Err(e)];
            }
        }
        // Each send now finds its topic known and enqueues on its first poll, in order.
        let sends = messages.iter().map(|(message, span)| self.publish(message).instrument(span.clone()));
        futures::future::join_all(sends).await
    }

    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>, BusError> {
        self.ensure_topic(topic).await?;
        let context = LagReporter { group: group.to_owned(), prefix: self.options.prefix.clone() };
        let consumer: StreamConsumer<LagReporter> = self
            .options
            .client()
            .set("group.id", self.scoped(group))
            // Offsets move only when the consumer acknowledges, after its effect committed (see
            // `KafkaSubscription::ack`). Not when it closes: librdkafka's commit at close waits
            // for the broker, and a consumer is closed when the broker has gone away.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A new group starts at the beginning: events published before it existed count.
            .set("auto.offset.reset", "earliest")
            // A member that died without leaving (SIGKILL, a lost node) holds its partitions
            // until its session expires; librdkafka's 45 s default stalled the saga that long
            // after each crash in `make chaos`. Heartbeats every 2 s keep a live one in.
            .set("session.timeout.ms", SESSION_TIMEOUT_MS)
            .set("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS)
            // librdkafka's statistics carry each partition's lag; see `LagReporter`.
            .set("statistics.interval.ms", LAG_REPORT_INTERVAL_MS)
            .create_with_context(context)
            .map_err(unavailable)?;
        consumer.subscribe(&[&self.scoped(topic)]).map_err(unavailable)?;
        Ok(Box::new(KafkaSubscription {
            consumer: ClosedOffRuntime(Some(consumer)),
            prefix: self.options.prefix.clone(),
            committed: None,
            uncommitted: false,
        }))
    }
}

/// How long the group waits for a silent member before giving its partitions to the others
/// (the broker's `group.min.session.timeout.ms` is 6 s).
const SESSION_TIMEOUT_MS: &str = "10000";
const HEARTBEAT_INTERVAL_MS: &str = "2000";

/// How often, at most, a consumer commits the offsets its acknowledgements stored: about this
/// much of the work a consumer did is delivered again (and skipped) after it crashes.
const COMMIT_EVERY: Duration = Duration::from_millis(500);

/// How often a consumer reports its lag in messages.
const LAG_REPORT_INTERVAL_MS: &str = "5000";

/// Sets `agora_consumer_lag_messages` from librdkafka's statistics: per assigned partition,
/// the high watermark minus the group's position. It keeps being reported while the consumer
/// is stuck, which is when it matters.
struct LagReporter {
    group: String,
    prefix: String,
}

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        let lag = &agora_kit::metrics::metrics().consumer_lag_messages;
        for (name, topic) in &statistics.topics {
            let topic_name = name.strip_prefix(self.prefix.as_str()).unwrap_or(name);
            // Partition -1 is librdkafka's internal unassigned queue; -1 lag means unknown.
            for partition in topic.partitions.values().filter(|p| p.partition >= 0 && p.consumer_lag >= 0) {
                let labels = PartitionLabels {
                    topic: topic_name.to_owned(),
                    group: self.group.clone(),
                    partition: partition.partition,
                };
                lag.get_or_create(&labels).set(partition.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for LagReporter {
    /// Acknowledgements are committed in the background; a commit that failed only means
    /// those events come again after a restart or a rebalance, and their consumer skips them.
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result
            && error.rdkafka_error_code() != Some(RDKafkaErrorCode::NoOffset)
        {
            tracing::warn!(group = %self.group, %error, partitions = offsets.count(),
                "committing consumed offsets failed; those events will be delivered again and skipped as duplicates");
        }
    }
}

pub struct KafkaSubscription {
    consumer: ClosedOffRuntime,
    /// When this consumer last asked for a commit, if it has.
    committed: Option<Instant>,
    /// Whether offsets were stored since.
    uncommitted: bool,
    /// The bus's prefix, taken off topic names on the way in and put back for commits.
    prefix: String,
}

/// A consumer closed on a blocking thread when it is dropped. librdkafka's close leaves the
/// group and waits for the broker: seconds, up to the session timeout, when the broker has gone
/// away, which is when a consumer is dropped to subscribe again. On a runtime thread that wait
/// stopped everything else the thread had, a service's answers to HTTP/2 keepalive pings
/// included, and its callers saw the connection lost (`make test` caught it while its broker
/// was down).
struct ClosedOffRuntime(Option<StreamConsumer<LagReporter>>);

impl std::ops::Deref for ClosedOffRuntime {
    type Target = StreamConsumer<LagReporter>;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("the consumer is there until it is dropped")
    }
}

impl Drop for ClosedOffRuntime {
    fn drop(&mut self) {
        let Some(consumer) = self.0.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(consumer))),
            Err(_) => drop(consumer),
        }
    }
}

impl std::fmt::Debug for KafkaSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSubscription").finish_non_exhaustive()
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        // While nothing comes, what the last acknowledgements stored is committed once
        // (`recv` is cancellation safe: a message is taken only when it is returned).
        let message = loop {
            let received = if self.uncommitted {
                match tokio::time::timeout(COMMIT_EVERY, self.consumer.recv()).await {
                    Ok(received) => received,
                    Err(_) => {
                        self.commit();
                        continue;
                    }
                }
            } else {
                self.consumer.recv().await
            };
            match received {
                // The broker out of reach is librdkafka's to mend: it reconnects by itself
                // (with its own back-off) and the consumer carries on from its position. Given
                // up on, the consumer was made anew ten times a second for as long as the
                // broker was down.
                Err(KafkaError::MessageConsumption(code)) if is_unreachable(code) => {
                    tracing::debug!(%code, "the broker is out of reach; waiting for librdkafka to reconnect");
                }
                received => break received,
            }
        };
        Ok(delivery(&message.map_err(unavailable)?, &self.prefix))
    }

    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        let mut batch = vec![self.next().await?];
        // librdkafka fetches ahead: what it holds already is handed out without waiting (a
        // pending `recv` taken no further loses nothing).
        while batch.len() < max {
            match self.consumer.recv().now_or_never() {
                Some(Ok(message)) => batch.push(delivery(&message, &self.prefix)),
                Some(Err(error)) => {
                    tracing::warn!(%error, "receive failed; handing out what came before it");
                    break;
                }
                None => break,
            }
        }
        Ok(batch)
    }

    async fn ack(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        let mut position = TopicPartitionList::new();
        position
            .add_partition_offset(
                &format!("{}{}", self.prefix, delivery.topic),
                delivery.partition,
                Offset::Offset(delivery.offset + 1),
            )
            .map_err(unavailable)?;
        // Stored, and committed with the others in the background, at most every COMMIT_EVERY
        // (and COMMIT_EVERY after the last one when no more come). A synchronous commit per
        // event blocked a runtime thread for a round trip to the broker each time; an
        // asynchronous one per event doubled the broker's CPU (docs/benchmarks.md). The effect
        // and the event's claim have committed already, so events whose offsets a crash kept
        // from being committed come again and their consumer skips them.
        self.consumer.store_offsets(&position).map_err(unavailable)?;
        self.uncommitted = true;
        if self.committed.is_none_or(|at| at.elapsed() >= COMMIT_EVERY) {
            self.commit();
        }
        Ok(())
    }
}

impl KafkaSubscription {
    /// Asks librdkafka to commit the stored offsets, without waiting for the broker. A commit
    /// that cannot be asked for (the group rebalancing) is left to the next one: until then,
    /// those events would only come again, to be skipped.
    fn commit(&mut self) {
        self.committed = Some(Instant::now());
        self.uncommitted = false;
        match self.consumer.commit_consumer_state(CommitMode::Async) {
            // Nothing stored that is not committed already.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) | Ok(()) => {}
            Err(error) => tracing::warn!(%error, "cannot commit consumed offsets now; trying again with the next"),
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// Errors a retry cannot fix: the record itself is unacceptable.
/// Errors that say only that the brokers cannot be reached now.
fn is_unreachable(code: RDKafkaErrorCode) -> bool {
    matches!(code, RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown)
}

fn is_permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessage | RDKafkaErrorCode::InvalidRecord
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(protocol: KafkaProtocol, sasl: bool, ca: bool) -> KafkaSecurity {
        KafkaSecurity {
            protocol,
            sasl: sasl.then(|| KafkaSasl {
                mechanism: SaslMechanism::ScramSha512,
                username: "agora".to_owned(),
                password: "s3cret-pw".to_owned().into(),
            }),
            ca: ca.then(|| PathBuf::from("/etc/agora/kafka/ca.crt")),
            client_cert: None,
        }
    }

    #[test]
    fn settings_that_cannot_work_together_are_refused_naming_the_flag() {
        let refused = |s: KafkaSecurity| s.check().expect_err("refused");
        assert!(refused(security(KafkaProtocol::Plaintext, true, false)).contains("--kafka-security sasl-ssl"));
        assert!(refused(security(KafkaProtocol::Plaintext, false, true)).contains("--kafka-tls-ca"));
        assert!(refused(security(KafkaProtocol::Ssl, true, true)).contains("not ssl"));
        assert!(refused(security(KafkaProtocol::SaslSsl, false, true)).contains("--kafka-sasl-password"));
        for fine in [
            security(KafkaProtocol::Plaintext, false, false),
            security(KafkaProtocol::Ssl, false, true),
            security(KafkaProtocol::SaslSsl, true, false),
        ] {
            assert_eq!(fine.check(), Ok(()), "{fine:?}");
        }
    }

    #[test]
    fn librdkafka_gets_the_protocol_the_credentials_and_a_host_name_check() {
        let mut config = ClientConfig::new();
        security(KafkaProtocol::SaslSsl, true, true).apply(&mut config);
        let get = |key: &str| config.get(key).map(str::to_owned);
        assert_eq!(get("security.protocol").as_deref(), Some("sasl_ssl"));
        assert_eq!(get("sasl.mechanisms").as_deref(), Some("SCRAM-SHA-512"));
        assert_eq!(get("sasl.username").as_deref(), Some("agora"));
        assert_eq!(get("ssl.endpoint.identification.algorithm").as_deref(), Some("https"));
        assert_eq!(get("ssl.ca.location").as_deref(), Some("/etc/agora/kafka/ca.crt"));

        let mut plain = ClientConfig::new();
        security(KafkaProtocol::Plaintext, false, false).apply(&mut plain);
        assert_eq!(plain.get("security.protocol"), Some("plaintext"));
        assert_eq!(plain.get("ssl.ca.location"), None);

        let mut system = ClientConfig::new();
        security(KafkaProtocol::Ssl, false, false).apply(&mut system);
        assert_eq!(system.get("ssl.ca.location"), Some("probe"));
    }

    #[test]
    fn the_password_never_shows_in_debug() {
        let shown = format!("{:?}", security(KafkaProtocol::SaslSsl, true, false));
        assert!(shown.contains("agora") && !shown.contains("s3cret-pw"), "{shown}");
    }

    #[test]
    fn protocol_and_mechanism_names_round_trip() {
        for name in KafkaProtocol::NAMES {
            name.parse::<KafkaProtocol>().unwrap();
        }
        for name in SaslMechanism::NAMES {
            name.parse::<SaslMechanism>().unwrap();
        }
        assert!("sasl_plaintext".parse::<KafkaProtocol>().unwrap_err().contains("plaintext, ssl, sasl-ssl"));
    }
}
