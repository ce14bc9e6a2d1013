#!/usr/bin/env bash
# Throwaway local Apache Kafka broker for Agora's development and tests.
#
# Usage: scripts/kafka.sh {install|start|stop|kill|status|url|brokers|ports|reset|client-env|
#                          topics ARGS...}
#
#   install         fetch Kafka and a log4j2 backend with mvn (once per version)
#   start           install and format storage (once) and start the broker; no-op if running
#   stop            SIGTERM the broker (SIGKILL after 30s); no-op if not running
#   kill            SIGKILL it, as a crash would (for fault tests); no-op if not running
#   status          report whether the broker runs and answers (0 = yes, 3 = not running,
#                   1 = its process runs but it does not answer)
#   url, brokers    print the bootstrap address (host:port; the running broker's own when
#                   it was started on a free port)
#   ports           print both listeners' ports, as key=port lines
#   reset           stop the broker and delete the instance's files (keeps the installed jars)
#   client-env      print the KEY=VALUE lines a client needs to reach the broker in the
#                   instance's security mode: AGORA_KAFKA_SECURITY, and with sasl-ssl also
#                   AGORA_KAFKA_SASL_MECHANISM, _SASL_USERNAME, _SASL_PASSWORD, _TLS_CA, _TLS_CERT
#                   and _TLS_KEY (the variables a role reads), one line each
#   topics ARGS...  run Kafka's topic tool against the broker, e.g.
#                   topics --list | topics --create --topic T --partitions 3
#
# The broker is private to Agora: a single KRaft node (broker and controller in one
# process) whose jars, config and data live under the cache directory, listening only on
# 127.0.0.1. Named instances run side by side (`make up` uses `up`, `make test` uses
# `test`, a test may start its own); they share the installed jars. Topics are never auto-created, so tests must create the ones they use. Its
# settings (replication factor 1) make it fit for disposable test data only.
#
# Secure mode (AGORA_KAFKA_SECURITY=sasl-ssl), for a single broker only: the client listener
# speaks SASL_SSL and takes both a SCRAM-SHA-512 login and a client certificate (mutual TLS);
# the broker reaches its own listener the same way, as SCRAM user broker-NODE_ID. The
# controller listener stays PLAINTEXT, on 127.0.0.1 only. The instance's tls/ directory holds
# its CA (ca.pem), the broker's certificate (broker.pem: server and client, for the bind
# address and localhost), Agora's client certificate (client.pem, client-key.pem) and the
# password of SCRAM user agora (sasl-password, 0600), all made at the first start, when the
# credentials are written into the storage. An instance keeps the mode it was formatted with:
# starting it in the other one fails (reset it first). scripts/kafka-cluster.sh's nodes are
# always plaintext, so a cluster node's settings together with sasl-ssl are refused.
#
# Kafka's version is pinned in scripts/versions.env. Needs Java 17+ and Maven (`install`
# as root puts the distro packages in if they are missing).
#
# Environment:
#   AGORA_CACHE                  cache root                 (default: $HOME/.cache/agora)
#   AGORA_KAFKA_INSTANCE         instance name: its config, data and pid live in
#                                $AGORA_CACHE/kafka/instances/NAME  (default: dev)
#   AGORA_KAFKA_PORT             client port, 0 = any free one               (default: 9092)
#   AGORA_KAFKA_CONTROLLER_PORT  KRaft controller port, 0 = any free one     (default: 9093)
#   AGORA_KAFKA_SECURITY         the client listener's security, fixed when the instance is
#                                first started: plaintext, or sasl-ssl (SCRAM-SHA-512 over TLS
#                                with a client certificate; see above)  (default: plaintext)
#   AGORA_BIND_HOST              the address to listen on and advertise, one of this machine's
#                                (default: 127.0.0.1)
# A member of a cluster of several nodes (scripts/kafka-cluster.sh sets these; plaintext only):
#   AGORA_KAFKA_NODE_ID          this node's id                              (default: 1)
#   AGORA_KAFKA_VOTERS           the controller quorum, ID@HOST:PORT,…  (default: this node alone)
#   AGORA_KAFKA_CLUSTER_ID       the cluster's id, the same on every node (default: one of its own)
#   AGORA_KAFKA_REPLICATION      replicas of every topic, internal ones included; a majority of
#                                them (min.insync.replicas) must take each write   (default: 1)
#   AGORA_KAFKA_LISTENERS_EXTRA  more listeners, NAME=PORT@HOST:PORT separated by spaces: NAME
#                                listens on PORT and is advertised at HOST:PORT (a proxy in front
#                                of it); a client that bootstraps there is told the other nodes'
#                                NAME addresses, so each client can have a path of its own
#   AGORA_KAFKA_INTER_BROKER_LISTENER  the listener this node reaches the others on (one of the
#                                extra ones; default: PLAINTEXT)
#   AGORA_KAFKA_JVM_OPTS         the broker JVM's collector and compiler flags
#                                (default: -XX:+UseSerialGC -XX:TieredStopAtLevel=1)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/versions.env"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/daemon.sh"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/tls.sh"

# --- Configuration ----------------------------------------------------------

KAFKA_VERSION="${KAFKA_VERSION:?missing in versions.env}"
KAFKA_LOG4J_VERSION="${KAFKA_LOG4J_VERSION:?missing in versions.env}"

KAFKA_HOST="$DAEMON_HOST"  # one of this machine's addresses
KAFKA_NODE_ID="${AGORA_KAFKA_NODE_ID:-1}"
[[ "$KAFKA_NODE_ID" =~ ^[0-9]+$ ]] || die "AGORA_KAFKA_NODE_ID='$KAFKA_NODE_ID' is not a number"
KAFKA_VOTERS="${AGORA_KAFKA_VOTERS:-}"  # empty: this node alone (its port is known at start)
[[ -z "$KAFKA_VOTERS" || "$KAFKA_VOTERS" =~ ^[0-9]+@[^,:]+:[0-9]+(,[0-9]+@[^,:]+:[0-9]+)*$ ]] \
  || die "AGORA_KAFKA_VOTERS='$KAFKA_VOTERS': use ID@HOST:PORT,ID@HOST:PORT,…"
KAFKA_REPLICATION="${AGORA_KAFKA_REPLICATION:-1}"
[[ "$KAFKA_REPLICATION" =~ ^[1-9]$ ]] || die "AGORA_KAFKA_REPLICATION='$KAFKA_REPLICATION' is not 1 to 9"
# A majority of the replicas must have each write before it is acknowledged (acks=all).
KAFKA_MIN_ISR=$((KAFKA_REPLICATION / 2 + 1))

KAFKA_EXTRA="${AGORA_KAFKA_LISTENERS_EXTRA:-}"
for extra in $KAFKA_EXTRA; do
  [[ "$extra" =~ ^[A-Z][A-Z0-9_]*=[0-9]+@[^:@]+:[0-9]+$ ]] \
    || die "AGORA_KAFKA_LISTENERS_EXTRA: '$extra' is not NAME=PORT@HOST:PORT (NAME in capitals)"
done
KAFKA_INTER_BROKER="${AGORA_KAFKA_INTER_BROKER_LISTENER:-PLAINTEXT}"
[[ "$KAFKA_INTER_BROKER" == PLAINTEXT || " $KAFKA_EXTRA" == *" $KAFKA_INTER_BROKER="* ]] \
  || die "AGORA_KAFKA_INTER_BROKER_LISTENER='$KAFKA_INTER_BROKER' is not PLAINTEXT or an extra listener"

port_declare client AGORA_KAFKA_PORT 9092
port_declare controller AGORA_KAFKA_CONTROLLER_PORT 9093

KAFKA_ROOT="$CACHE_DIR/kafka"
# Installed jars, per version, so bumping the pin installs beside the old one.
KAFKA_HOME="$KAFKA_ROOT/$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_INSTALLED="$KAFKA_HOME/.installed"  # written only after a complete install
KAFKA_INSTALL_LOCK="$KAFKA_ROOT/.install.lock"
# One instance: config, data, pid, ports, the JVM's own output (kafka.log).
instance_init kafka "${AGORA_KAFKA_INSTANCE:-dev}" AGORA_KAFKA_INSTANCE "$KAFKA_ROOT/instances"
# Config, rewritten on every start so port overrides always take effect.
KAFKA_CONF="$INSTANCE_ROOT/config"
KAFKA_PROPS="$KAFKA_CONF/server.properties"
KAFKA_LOG4J="$KAFKA_CONF/log4j2.properties"
KAFKA_TOOLS_LOG4J="$KAFKA_CONF/tools-log4j2.properties"
KAFKA_CLIENT_PROPS="$KAFKA_CONF/tools-client.properties"
KAFKA_DATA="$INSTANCE_ROOT/data"
KAFKA_LOG_DIRS="$KAFKA_DATA/logs"  # partitions and metadata log (Kafka's "log.dirs")
KAFKA_CLUSTER_ID_FILE="$KAFKA_DATA/cluster-id"
KAFKA_LOG="$KAFKA_DATA/server.log"  # the broker's log4j2 output
DAEMON_MORE_LOGS=("$KAFKA_LOG")

# Security: the mode asked for, and the instance's own once its storage is formatted (its SCRAM
# credentials live in the metadata log), which every command but start goes by. An instance
# formatted before the modes existed has no record and is plaintext.
KAFKA_SECURITY_ASKED="${AGORA_KAFKA_SECURITY:-plaintext}"
KAFKA_SECURITY_FILE="$KAFKA_DATA/security"
# The mode the instance's storage was formatted with, or nothing before its first start.
kafka_security_recorded() {
  [[ -f "$KAFKA_LOG_DIRS/meta.properties" ]] || return 0
  local mode
  mode="$(cat "$KAFKA_SECURITY_FILE" 2>/dev/null || true)"
  printf '%s\n' "${mode:-plaintext}"
}
KAFKA_SECURITY="$(kafka_security_recorded)"
KAFKA_SECURITY="${KAFKA_SECURITY:-$KAFKA_SECURITY_ASKED}"
for mode in "$KAFKA_SECURITY_ASKED" "$KAFKA_SECURITY"; do
  [[ "$mode" == plaintext || "$mode" == sasl-ssl ]] \
    || die "AGORA_KAFKA_SECURITY='$mode' is not plaintext or sasl-ssl"
  # A cluster's nodes reach each other on plaintext listeners (and proxies in front of them).
  [[ "$mode" == plaintext \
    || (-z "$KAFKA_VOTERS$KAFKA_EXTRA${AGORA_KAFKA_INTER_BROKER_LISTENER:-}" && "$KAFKA_REPLICATION" == 1) ]] \
    || die "AGORA_KAFKA_SECURITY=sasl-ssl is for a single broker, but this is a node of a cluster (AGORA_KAFKA_VOTERS, _LISTENERS_EXTRA, _INTER_BROKER_LISTENER or _REPLICATION set, as scripts/kafka-cluster.sh does), whose nodes are plaintext only"
done
# sasl-ssl: the files of instance_tls, made once (reset deletes them).
KAFKA_TLS="$INSTANCE_ROOT/tls"
KAFKA_SASL_USER=agora  # Agora's SCRAM user
KAFKA_SASL_PASSWORD_FILE="$KAFKA_TLS/sasl-password"
KAFKA_BROKER_USER="broker-$KAFKA_NODE_ID"  # the broker's own, for its inter-broker connections
KAFKA_BROKER_PASSWORD_FILE="$KAFKA_TLS/broker-sasl-password"
# Key and certificate in one file, as a PEM key store (ssl.keystore.type=PEM) wants them.
KAFKA_BROKER_KEYSTORE="$KAFKA_TLS/broker-keystore.pem"
KAFKA_CLIENT_KEYSTORE="$KAFKA_TLS/client-keystore.pem"  # the command-line tools'
# The client listener's name (also its protocol); with sasl-ssl the broker reaches itself there.
KAFKA_LISTENER=PLAINTEXT
if [[ "$KAFKA_SECURITY" == sasl-ssl ]]; then KAFKA_LISTENER=SASL_SSL KAFKA_INTER_BROKER=SASL_SSL; fi
# What our broker's command line contains (the config path is per instance).
INSTANCE_PATTERN="kafka.Kafka $KAFKA_PROPS"
INSTANCE_NOT_READY="does not answer as node $KAFKA_NODE_ID"
INSTANCE_STOP_TIMEOUT_SECS=30
# A test or development broker lives minutes and carries little: the serial collector (no
# concurrent GC threads) and the quick compiler only (no C2 compilations, which took most of a
# broker's CPU in the test suite). Both cut its CPU by a third.
KAFKA_JVM_OPTS="${AGORA_KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1}"

TOOL_TIMEOUT_SECS=120  # any one command-line tool run (a hung JVM must not hang tests)

# --- Helpers ----------------------------------------------------------------

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Major version of the java on PATH (e.g. 17), or nothing.
java_major() {
  local v
  v="$(java -version 2>&1 | awk -F'"' '/version/ { print $2; exit }')" || return 1
  v="${v#1.}"
  printf '%s\n' "${v%%[.-]*}"
}

have_tools() {
  command -v mvn >/dev/null 2>&1 && command -v java >/dev/null 2>&1 \
    && (($(java_major || echo 0) >= 17))
}

# A short-lived JVM running one of Kafka's command-line tools: small heap, fast
# start-up, errors only on stderr, bounded in time. java expands the classpath wildcard.
kafka_tool() {
  (cd / && timeout "$TOOL_TIMEOUT_SECS" java -Xms32m -Xmx256m -XX:TieredStopAtLevel=1 \
    -XX:+UseSerialGC -Dlog4j2.configurationFile="$KAFKA_TOOLS_LOG4J" \
    -cp "$KAFKA_LIBS/*" "$@" 8>&- 9>&-)
}

# Installs (all instances share the jars) are serialised on fd 8, with a bounded wait; the
# broker never inherits the descriptor.
INSTALL_LOCK_HELD=0
take_install_lock() {
  ((INSTALL_LOCK_HELD)) && return 0
  mkdir -p "$KAFKA_ROOT"
  exec 8>>"$KAFKA_INSTALL_LOCK"
  flock -w "$INSTANCE_LOCK_TIMEOUT_SECS" 8 \
    || die "another install still holds $KAFKA_INSTALL_LOCK after ${INSTANCE_LOCK_TIMEOUT_SECS}s"
  INSTALL_LOCK_HELD=1
}

# Where it listens, from PORTS as they are (no lookup).
instance_where() {
  if [[ "$KAFKA_SECURITY" == sasl-ssl ]]; then
    printf '%s:%s (SASL_SSL and a client certificate)\n' "$KAFKA_HOST" "${PORTS[client]}"
  else
    printf '%s:%s\n' "$KAFKA_HOST" "${PORTS[client]}"
  fi
}

# True if a broker answers API-versions requests on our port and it is our node
# (the tool first fetches metadata, then asks every broker listed there).
instance_ready() {
  [[ -f "$KAFKA_INSTALLED" && -f "$KAFKA_CLIENT_PROPS" ]] || return 1
  port_open "${PORTS[client]}" || return 1
  local out
  out="$(kafka_tool org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "$KAFKA_HOST:${PORTS[client]}" --command-config "$KAFKA_CLIENT_PROPS" \
    2>/dev/null)" || return 1
  grep -qF "$KAFKA_HOST:${PORTS[client]} (id: $KAFKA_NODE_ID " <<<"$out"
}

# The generated Maven project whose only job is to copy Kafka's runtime jars.
write_pom() {
  cat >"$KAFKA_HOME/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by scripts/kafka.sh: only used to fetch Kafka's jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>agora.local</groupId>
  <artifactId>agora-kafka</artifactId>
  <version>${KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <!-- The broker (kafka.Kafka) and the storage tool (kafka.tools.StorageTool). -->
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
    <!-- Command-line tools: BrokerApiVersionsCommand (readiness), TopicCommand. -->
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
    <!-- Logging backend. Kafka 4 logs through slf4j-api 1.7 into log4j2, so the binding
         is log4j-slf4j-impl (slf4j 1.x), not log4j-slf4j2-impl; as in Kafka's own
         distribution. Version = the log4j-core kafka-server depends on. -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>${KAFKA_LOG4J_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>${KAFKA_LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
  <build>
    <pluginManagement>
      <plugins>
        <!-- Pinned: Maven 3.8's default (2.8) is ancient. -->
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-dependency-plugin</artifactId>
          <version>3.8.1</version>
        </plugin>
      </plugins>
    </pluginManagement>
  </build>
</project>
EOF
}

# write_private FILE: stdin into FILE, readable by its owner only (it may hold passwords).
write_private() {
  (umask 077 && cat >"$1.tmp") && mv -f "$1.tmp" "$1"
}

# kafka_password FILE: a random alphanumeric password (32 characters) in FILE, made once.
kafka_password() {
  [[ -s "$1" ]] && return 0
  local password
  password="$(head -c 512 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')"
  ((${#password} >= 32)) || die "could not make a password from /dev/urandom"
  printf '%s\n' "${password:0:32}" | write_private "$1"
}

# sasl-ssl's files in KAFKA_TLS (scripts/lib/tls.sh), made once: the CA, the broker's
# certificate (issued anew when it does not name the bind address, which AGORA_BIND_HOST may
# have changed), Agora's client certificate, both SCRAM passwords, and the PEM key stores.
instance_tls() {
  tls_server "$KAFKA_TLS" broker both "$KAFKA_HOST"
  tls_leaf "$KAFKA_TLS" client client "DNS:$KAFKA_SASL_USER"
  kafka_password "$KAFKA_SASL_PASSWORD_FILE"
  kafka_password "$KAFKA_BROKER_PASSWORD_FILE"
  cat "$KAFKA_TLS/broker-key.pem" "$KAFKA_TLS/broker.pem" | write_private "$KAFKA_BROKER_KEYSTORE"
  cat "$KAFKA_TLS/client-key.pem" "$KAFKA_TLS/client.pem" | write_private "$KAFKA_CLIENT_KEYSTORE"
}

# Broker config for PORTS. Regenerated on every start (while stopped).
write_config() {
  mkdir -p "$KAFKA_CONF"
  local extra port listeners="" advertised="" protocols=""
  for extra in $KAFKA_EXTRA; do
    port="${extra#*=}"  # NAME=PORT@HOST:PORT
    listeners+=",${extra%%=*}://$KAFKA_HOST:${port%%@*}"
    advertised+=",${extra%%=*}://${extra#*@}"
    protocols+=",${extra%%=*}:PLAINTEXT"
  done
  # sasl-ssl: the controller listener, which stays PLAINTEXT, on the loopback address only, and
  # the settings appended to each file (each starts with a line break; empty when plaintext).
  local controller_host="$KAFKA_HOST" security="" client_security=""
  if [[ "$KAFKA_SECURITY" == sasl-ssl ]]; then
    instance_tls
    controller_host=127.0.0.1
    security=$'\n'"$(cat <<EOF

# AGORA_KAFKA_SECURITY=sasl-ssl: a client logs in with SCRAM-SHA-512 over TLS and must show a
# certificate of the instance's CA as well (on a SASL_SSL listener, only the listener's own
# ssl.client.auth applies). The broker's own connections to the listener (inter-broker ones:
# transaction markers) log in as its own SCRAM user; both users' credentials were written into
# the metadata log by the storage format, so they exist from the first start. The controller
# listener cannot take SCRAM (a controller serves the metadata that holds the credentials).
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$KAFKA_BROKER_USER" password="$(<"$KAFKA_BROKER_PASSWORD_FILE")";
listener.name.sasl_ssl.ssl.client.auth=required
# PEM stores (the key and certificate in one file; the CA's certificate): no JKS.
ssl.keystore.type=PEM
ssl.keystore.location=$KAFKA_BROKER_KEYSTORE
ssl.truststore.type=PEM
ssl.truststore.location=$KAFKA_TLS/ca.pem
# The broker's own connections check the certificate's names (the default, kept so).
ssl.endpoint.identification.algorithm=https
EOF
)"
    client_security=$'\n'"$(cat <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$KAFKA_SASL_USER" password="$(<"$KAFKA_SASL_PASSWORD_FILE")";
ssl.keystore.type=PEM
ssl.keystore.location=$KAFKA_CLIENT_KEYSTORE
ssl.truststore.type=PEM
ssl.truststore.location=$KAFKA_TLS/ca.pem
EOF
)"
  fi
  write_private "$KAFKA_PROPS" <<EOF
# Generated by scripts/kafka.sh on each start; edits are overwritten.

# A KRaft node that is both broker and controller (no ZooKeeper in Kafka 4): a cluster of a
# few nodes on one machine runs a JVM per node, not one per role.
process.roles=broker,controller
node.id=$KAFKA_NODE_ID
# A static voter list (this node alone, or the cluster's from AGORA_KAFKA_VOTERS). With a
# dynamic quorum, format records the controllers' host:port in the metadata log, which would
# go stale when a controller port changes; a static voter list is config only.
controller.quorum.voters=${KAFKA_VOTERS:-$KAFKA_NODE_ID@$controller_host:${PORTS[controller]}}

# One address (loopback unless AGORA_BIND_HOST), for clients and for the controller alike
# (the controller on loopback with sasl-ssl). AGORA_KAFKA_LISTENERS_EXTRA adds listeners
# advertised at proxies in front of them.
listeners=$KAFKA_LISTENER://$KAFKA_HOST:${PORTS[client]},CONTROLLER://$controller_host:${PORTS[controller]}$listeners
# What clients are told to connect to after bootstrap; must be reachable by them.
advertised.listeners=$KAFKA_LISTENER://$KAFKA_HOST:${PORTS[client]}$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=$KAFKA_INTER_BROKER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,$KAFKA_LISTENER:$KAFKA_LISTENER$protocols

log.dirs=$KAFKA_LOG_DIRS
# Default partition count for topics created without one.
num.partitions=3

# Replicas of every topic (AGORA_KAFKA_REPLICATION), and the majority of them that must have
# a write before it is acknowledged. Internal topics default to 3 replicas, which one broker
# cannot satisfy: consumer groups and transactions would fail until they are lowered.
default.replication.factor=$KAFKA_REPLICATION
min.insync.replicas=$KAFKA_MIN_ISR
offsets.topic.replication.factor=$KAFKA_REPLICATION
transaction.state.log.replication.factor=$KAFKA_REPLICATION
transaction.state.log.min.isr=$KAFKA_MIN_ISR
share.coordinator.state.topic.replication.factor=$KAFKA_REPLICATION
share.coordinator.state.topic.min.isr=$KAFKA_MIN_ISR
# A replica that missed writes never becomes leader: acknowledged writes are never dropped.
unclean.leader.election.enable=false
# A broker that stops heartbeating is fenced, and its partitions get new leaders, after 3 s
# rather than 9: on one machine heartbeats are not delayed by a network, and every second
# here is a second in which producers to its partitions wait.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
# The offsets topic defaults to 50 partitions; a few make the first consumer group
# (i.e. the first test that consumes) start faster.
offsets.topic.num.partitions=3

# Consumers join a group at once instead of waiting 3s for more members (tests).
group.initial.rebalance.delay.ms=0
# Tests create their topics explicitly; a typo must fail rather than silently create
# a new topic with default settings.
auto.create.topics.enable=false$security
EOF

  # The broker logs to a file in the data dir (one per run; see instance_launch).
  cat >"$KAFKA_LOG4J" <<EOF
# Generated by scripts/kafka.sh: the broker's log4j2 configuration.
status = warn
name = agora-kafka
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $KAFKA_LOG
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
# Per-request and per-partition state changes are noise for tests.
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
EOF

  # Command-line tools: errors only, on stderr.
  cat >"$KAFKA_TOOLS_LOG4J" <<'EOF'
# Generated by scripts/kafka.sh: log4j2 configuration of the command-line tools.
status = warn
name = agora-kafka-tools
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ERROR
rootLogger.appenderRef.err.ref = STDERR
EOF

  # Tools give up quickly instead of retrying for a minute against a broker that is
  # not up yet (the readiness loop retries instead). With sasl-ssl they log in as Agora does
  # (its SCRAM user and client certificate), so a ready broker is one Agora can reach.
  write_private "$KAFKA_CLIENT_PROPS" <<EOF
request.timeout.ms=5000
default.api.timeout.ms=10000$client_security
EOF
}

# Create the storage (metadata log) once, with a cluster id kept beside it, and the security
# mode it is for (with sasl-ssl, the SCRAM users are written into it).
format_storage() {
  [[ -f "$KAFKA_LOG_DIRS/meta.properties" ]] && return 0

  rm -rf "$KAFKA_LOG_DIRS"  # leftovers of an interrupted format
  mkdir -p "$KAFKA_DATA"
  if [[ -n "${AGORA_KAFKA_CLUSTER_ID:-}" ]]; then
    printf '%s\n' "$AGORA_KAFKA_CLUSTER_ID" >"$KAFKA_CLUSTER_ID_FILE"
  elif [[ ! -s "$KAFKA_CLUSTER_ID_FILE" ]]; then
    kafka_tool kafka.tools.StorageTool random-uuid >"$KAFKA_CLUSTER_ID_FILE.tmp" \
      || die "could not generate a cluster id"
    mv -f "$KAFKA_CLUSTER_ID_FILE.tmp" "$KAFKA_CLUSTER_ID_FILE"
  fi
  local cluster_id
  cluster_id="$(<"$KAFKA_CLUSTER_ID_FILE")"
  [[ "$cluster_id" != -* ]] || die "cluster id '$cluster_id' starts with '-', which kafka-storage reads as an option; choose another (AGORA_KAFKA_CLUSTER_ID)"
  local scram=()
  if [[ "$KAFKA_SECURITY" == sasl-ssl ]]; then
    scram=(--add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USER,password=$(<"$KAFKA_SASL_PASSWORD_FILE")]"
      --add-scram "SCRAM-SHA-512=[name=$KAFKA_BROKER_USER,password=$(<"$KAFKA_BROKER_PASSWORD_FILE")]")
  fi
  # Before the format: the record counts only once meta.properties exists (an interrupted
  # format is done again, and writes it again).
  printf '%s\n' "$KAFKA_SECURITY" >"$KAFKA_SECURITY_FILE"
  log "formatting storage in $KAFKA_LOG_DIRS (cluster id $cluster_id, $KAFKA_SECURITY)"
  # The arguments go through a private argument file (java @FILE, each one quoted), so that
  # the SCRAM passwords never show on a command line.
  local args="$KAFKA_DATA/format.args" rc=0
  (umask 077 && printf '"%s"\n' kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_PROPS" "${scram[@]}" >"$args")
  kafka_tool "@$args" >"$KAFKA_DATA/format.log" 2>&1 || rc=$?
  rm -f "$args"
  ((rc == 0)) || { tail -n 20 "$KAFKA_DATA/format.log" >&2; die "storage format failed (log: $KAFKA_DATA/format.log)"; }
}

# The config for PORTS, and the storage formatted once (instance_start, while stopped).
instance_config() {
  write_config
  format_storage
}

# The class-data archive: the broker's classes, parsed and verified once and mapped by every
# later JVM (start-up CPU 6.6 s -> 2.4 s here). The first broker to stop cleanly writes it
# (-XX:ArchiveClassesAtExit) into its instance; instance_stopped moves it beside the jars.
KAFKA_CDS="$KAFKA_HOME/broker-classes.jsa"
KAFKA_CDS_DUMP="$INSTANCE_ROOT/broker-classes.jsa"

# The archive flag for a launch: map the archive if this JVM accepts it (another JDK build
# would not, and an archive written by a JVM killed mid-dump is incomplete), else write one.
cds_flag() {
  if [[ -f "$KAFKA_CDS" ]]; then
    if "$1" -XX:SharedArchiveFile="$KAFKA_CDS" -Xshare:on -cp "$KAFKA_LIBS/*" -version >/dev/null 2>&1; then
      printf '%s\n' "-XX:SharedArchiveFile=$KAFKA_CDS"
      return
    fi
    log "the class-data archive does not fit this JVM; writing a new one at the next clean stop"
    rm -f "$KAFKA_CDS"
  fi
  rm -f "$KAFKA_CDS_DUMP"
  printf '%s\n' "-XX:ArchiveClassesAtExit=$KAFKA_CDS_DUMP"
}

instance_stopped() {
  if [[ -s "$KAFKA_CDS_DUMP" && ! -f "$KAFKA_CDS" && "$1" == TERM ]]; then
    mv -f "$KAFKA_CDS_DUMP" "$KAFKA_CDS" && log "class-data archive written: $KAFKA_CDS"
  fi
  rm -f "$KAFKA_CDS_DUMP"
}

# The JVM (its own output goes to kafka.log, the broker's log to server.log, one per run).
# AGORA_KAFKA_JVM_OPTS replaces the collector and compiler flags (make bench sets the
# full-JIT ones of a long-lived broker).
instance_launch() {
  if [[ -f "$KAFKA_LOG" ]]; then mv -f "$KAFKA_LOG" "$KAFKA_LOG.prev"; fi
  local cds jvm_opts
  cds="$(cds_flag "$1")"
  read -r -a jvm_opts <<<"$KAFKA_JVM_OPTS"
  daemon_launch "$INSTANCE_PID" "$INSTANCE_LOG" \
    "$1" -Xms256m -Xmx512m "${jvm_opts[@]}" "$cds" -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_LOG4J" -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS"
}

instance_install() {
  take_install_lock
  if [[ -f "$KAFKA_INSTALLED" ]]; then
    log "Kafka $KAFKA_VERSION already installed ($KAFKA_LIBS)"
    return 0
  fi

  if ! have_tools; then
    is_root || die "Java 17+ and Maven are needed and installing them needs root; run: sudo $0 install"
    log "Java 17+ or Maven not found; installing the distro packages"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      openjdk-17-jdk-headless maven
    have_tools || die "installed openjdk-17-jdk-headless and maven but still no java 17+ and mvn on PATH"
  fi

  log "installing Kafka $KAFKA_VERSION with mvn (first time: downloads ~55 MB)"
  mkdir -p "$KAFKA_HOME"
  write_pom
  rm -rf "$KAFKA_LIBS" "$KAFKA_LIBS.tmp"  # leftovers of an interrupted install
  if ! (cd "$KAFKA_HOME" && mvn -B -q -f pom.xml dependency:copy-dependencies \
    -DoutputDirectory="$KAFKA_LIBS.tmp" -DincludeScope=runtime \
    >"$KAFKA_HOME/install.log" 2>&1 8>&- 9>&-); then
    tail -n 30 "$KAFKA_HOME/install.log" >&2 || true
    die "mvn could not fetch Kafka $KAFKA_VERSION (log: $KAFKA_HOME/install.log)"
  fi
  mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
  [[ -n "$(compgen -G "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar")" ]] \
    || die "mvn succeeded but $KAFKA_LIBS has no kafka_2.13-$KAFKA_VERSION.jar"
  touch "$KAFKA_INSTALLED"
  log "installed Kafka $KAFKA_VERSION ($(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $KAFKA_LIBS)"
}

# The program instance_launch runs, once Kafka is installed.
instance_binary() {
  instance_install >&2
  command -v java
}

cmd_topics() {
  [[ -f "$KAFKA_INSTALLED" ]] || die "Kafka not installed; run: $0 start"
  local server
  server="$(instance_endpoint client "" "")"
  [[ -f "$KAFKA_CLIENT_PROPS" ]] || write_config
  kafka_tool org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$server" --command-config "$KAFKA_CLIENT_PROPS" "$@"
}

# What a client needs besides the address, as KEY=VALUE lines (Agora's settings), for the
# instance's own mode.
cmd_client_env() {
  if [[ "$KAFKA_SECURITY" == plaintext ]]; then
    printf 'AGORA_KAFKA_SECURITY=plaintext\n'
    return 0
  fi
  local f
  for f in "$KAFKA_SASL_PASSWORD_FILE" "$KAFKA_TLS/ca.pem" "$KAFKA_TLS/client.pem" "$KAFKA_TLS/client-key.pem"; do
    [[ -s "$f" ]] || die "instance $INSTANCE_NAME has no $f yet; run: AGORA_KAFKA_SECURITY=sasl-ssl $0 start"
  done
  printf '%s\n' AGORA_KAFKA_SECURITY=sasl-ssl AGORA_KAFKA_SASL_MECHANISM=scram-sha-512 \
    "AGORA_KAFKA_SASL_USERNAME=$KAFKA_SASL_USER" "AGORA_KAFKA_SASL_PASSWORD=$(<"$KAFKA_SASL_PASSWORD_FILE")" \
    "AGORA_KAFKA_TLS_CA=$KAFKA_TLS/ca.pem" "AGORA_KAFKA_TLS_CERT=$KAFKA_TLS/client.pem" \
    "AGORA_KAFKA_TLS_KEY=$KAFKA_TLS/client-key.pem"
}

# --- Subcommands (scripts/lib/daemon.sh) -----------------------------------

instance_command() {
  case "$1" in
    url | brokers) instance_endpoint client "" "" ;;
    client-env) cmd_client_env ;;
    topics) shift; cmd_topics "$@" ;;
    *) usage ;;
  esac
}

# A formatted instance starts only in its own mode (running or not): its SCRAM credentials, and
# the clients' settings, go with it.
if [[ "${1:-}" == start && "$KAFKA_SECURITY" != "$KAFKA_SECURITY_ASKED" ]]; then
  die "instance $INSTANCE_NAME was set up with AGORA_KAFKA_SECURITY=$KAFKA_SECURITY, not $KAFKA_SECURITY_ASKED; start it with AGORA_KAFKA_SECURITY=$KAFKA_SECURITY, or delete it first: $0 reset"
fi

instance_main "$@"
