#!/usr/bin/env bash
# Local single-node Apache Kafka broker (KRaft, broker+controller) for development and
# integration tests, without Docker. The broker jars come from Maven Central through Maven
# (deploy/kafka/pom.xml) into a git-ignored cache; nothing fetched is committed.
#
# Usage: deploy/kafka/kafka.sh {fetch|start|stop|status|reset}
#        deploy/kafka/kafka.sh {start-secure|stop-secure|status-secure|reset-secure|env-secure}
#   fetch   download the broker jars once (no-op when already complete)
#   start   fetch if needed, format storage once, start the broker in the background and
#           wait until it serves metadata (no-op when something already listens on the port)
#   stop    stop the broker started by this script (SIGTERM, then SIGKILL after 30 s)
#   status  print running / not running; exit 0 when running, 1 otherwise
#   reset   stop and delete the broker's data (next start formats fresh storage)
#   *-secure  the same for a second, opt-in broker with its own run dir and ports whose client
#           listener is SASL_SSL (SCRAM-SHA-256 and SCRAM-SHA-512): on first start a throwaway
#           CA, broker keystore and truststore are made with keytool and a SCRAM user with a
#           random password is added at storage format time. Its inter-broker and controller
#           listeners stay PLAINTEXT on loopback. `env-secure` prints the MSGKPI_KAFKA_*
#           settings a client needs (bootstrap, protocol, mechanism, user, password file, CA).
#
# Environment:
#   MSGKPI_KAFKA_BOOTSTRAP   host:port of the PLAINTEXT listener (default 127.0.0.1:9092)
#   MSGKPI_KAFKA_CONTROLLER_PORT  port of the KRaft controller listener (default: the broker's
#                            port + 100, e.g. 9192; not port + 1, which is Alertmanager's 9093)
#   MSGKPI_CACHE_DIR         cache folder (default <repo>/.cache)
#   MSGKPI_KAFKA_VERSION     org.apache.kafka:kafka_2.13 version (default below)
#   MSGKPI_KAFKA_HEAP_OPTS   JVM heap options (default -Xmx512m -Xms256m)
#   MSGKPI_KAFKA_START_TIMEOUT  seconds to wait for readiness (default 90)
#   MSGKPI_KAFKA_SECURE_PORT the secured broker's SASL_SSL port (default: the broker's port
#                            + 10, e.g. 9102); its loopback PLAINTEXT listener is that + 1 and
#                            its controller that + 100
set -euo pipefail

SECURE=0
[[ "${1:-}" == *-secure ]] && SECURE=1

# Newest 4.x on Maven Central when this was written; verified with aiokafka 0.14 (idempotent
# and transactional producers, group join/commit, read_committed, TxnOffsetCommit).
# 4.1.2 was verified too (MSGKPI_KAFKA_VERSION=4.1.2).
readonly DEFAULT_KAFKA_VERSION="4.4.0"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
POM="$SCRIPT_DIR/pom.xml"

KAFKA_VERSION="${MSGKPI_KAFKA_VERSION:-$DEFAULT_KAFKA_VERSION}"
CACHE_DIR="${MSGKPI_CACHE_DIR:-$REPO_ROOT/.cache}"
KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
LIBS_DIR="$KAFKA_HOME/libs"
MARKER="$KAFKA_HOME/.fetch-complete"

RUN_DIR="$CACHE_DIR/kafka-run"
((SECURE)) && RUN_DIR="$CACHE_DIR/kafka-secure-run"
TLS_DIR="$RUN_DIR/tls"              # secure mode: CA, keystore, truststore, their password
CLIENT_ENV_FILE="$RUN_DIR/client.env"   # secure mode: settings for msgkpi's clients
SCRAM_USER="msgkpi"
DATA_DIR="$RUN_DIR/data"
LOGS_DIR="$RUN_DIR/logs"            # log4j2 output (server.log)
PID_FILE="$RUN_DIR/kafka.pid"
RUNNING_ON_FILE="$RUN_DIR/kafka.bootstrap"   # host:port of the broker in PID_FILE
FORMATTED_FILE="$RUN_DIR/data.formatted"     # bootstrap and version the storage was formatted for
OUT_FILE="$RUN_DIR/kafka.out"       # JVM stdout/stderr (normally almost empty)
PROPS_FILE="$RUN_DIR/server.properties"
LOG4J_FILE="$RUN_DIR/log4j2.xml"
READY_DIR="$RUN_DIR/ready-check"
LOCK_FILE="$CACHE_DIR/kafka.lock"

BOOTSTRAP="${MSGKPI_KAFKA_BOOTSTRAP:-127.0.0.1:9092}"
BOOTSTRAP="${BOOTSTRAP%%,*}"        # first entry if a list is given
HOST="${BOOTSTRAP%:*}"
PORT="${BOOTSTRAP##*:}"
if [[ -z "$HOST" || "$HOST" == "$BOOTSTRAP" || ! "$PORT" =~ ^[0-9]+$ ]]; then
    echo "kafka.sh: MSGKPI_KAFKA_BOOTSTRAP must be host:port, got '$BOOTSTRAP'" >&2
    exit 2
fi
CONTROLLER_PORT="${MSGKPI_KAFKA_CONTROLLER_PORT:-$((PORT + 100))}"
if ((SECURE)); then
    SECURE_PORT="${MSGKPI_KAFKA_SECURE_PORT:-$((PORT + 10))}"
    if [[ ! "$SECURE_PORT" =~ ^[0-9]+$ ]]; then
        echo "kafka.sh: MSGKPI_KAFKA_SECURE_PORT must be a port, got '$SECURE_PORT'" >&2
        exit 2
    fi
    # The loopback PLAINTEXT listener (inter-broker, readiness probe) takes PORT's role below.
    PORT=$((SECURE_PORT + 1))
    CONTROLLER_PORT=$((SECURE_PORT + 100))
fi
if [[ ! "$CONTROLLER_PORT" =~ ^[0-9]+$ || "$CONTROLLER_PORT" == "$PORT" ]]; then
    echo "kafka.sh: MSGKPI_KAFKA_CONTROLLER_PORT must be a port other than $PORT, got '$CONTROLLER_PORT'" >&2
    exit 2
fi

HEAP_OPTS="${MSGKPI_KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
START_TIMEOUT="${MSGKPI_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT=30

log() { echo "kafka.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

ensure_cache_dir() {
    mkdir -p "$CACHE_DIR"
    # Keep the cache out of git even if the repository's .gitignore does not list it.
    [[ -f "$CACHE_DIR/.gitignore" ]] || printf '*\n' >"$CACHE_DIR/.gitignore"
}

# Serialise fetch/start/stop/reset between concurrent callers (e.g. parallel test sessions).
take_lock() {
    ensure_cache_dir
    exec 9>"$LOCK_FILE"
    flock 9
}

port_open() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$HOST" "$PORT" 2>/dev/null
}

# Prints the pid of the broker this script started, if it is alive; else returns 1.
our_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against pid reuse: it must be a kafka.Kafka JVM using our properties file.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $PROPS_FILE" || return 1
    echo "$pid"
}

show_log_tail() {
    local f
    for f in "$LOGS_DIR/server.log" "$OUT_FILE"; do
        if [[ -s "$f" ]]; then
            echo "----- last 40 lines of $f -----" >&2
            tail -n 40 "$f" >&2
        fi
    done
}

# ---------------------------------------------------------------------------------- fetch

# run_mvn <log file> <maven args...>: quiet Maven run; its output is shown only on failure.
run_mvn() {
    local out="$1"
    shift
    if ! mvn -q -B -f "$POM" "$@" >"$out" 2>&1; then
        sed 's/\x1b\[[0-9;]*m//g' "$out" | tail -n 40 >&2
        return 1
    fi
}

do_fetch() {
    if [[ -f "$MARKER" ]]; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn (Maven) is required to fetch the Kafka jars"
    command -v java >/dev/null || die "java (17+) is required"

    log "fetching Apache Kafka $KAFKA_VERSION broker jars with Maven (first time only)..."
    local started=$SECONDS tmp list log4j_version slf4j_version slf4j_major
    # Leftovers of an interrupted fetch (we hold the lock, so none is in progress).
    rm -rf "$CACHE_DIR/.kafka-$KAFKA_VERSION.partial."*
    tmp="$(mktemp -d "$CACHE_DIR/.kafka-$KAFKA_VERSION.partial.XXXXXX")"
    FETCH_TMP="$tmp"
    # A failed or interrupted fetch leaves no marker and its partial folder is removed.
    trap 'rm -rf "$FETCH_TMP"' EXIT

    # 1. Which log4j2 / slf4j versions does this broker bring?
    list="$tmp/dependency-list.txt"
    run_mvn "$tmp/mvn-list.log" -Dkafka.version="$KAFKA_VERSION" \
        dependency:list -DincludeScope=runtime -DoutputFile="$list" \
        || die "Maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION"
    log4j_version="$(grep -oE 'org\.apache\.logging\.log4j:log4j-api:jar:[^:]+' "$list" | head -n1 | cut -d: -f4 || true)"
    slf4j_version="$(grep -oE 'org\.slf4j:slf4j-api:jar:[^:]+' "$list" | head -n1 | cut -d: -f4 || true)"
    [[ -n "$log4j_version" ]] || die "kafka_2.13:$KAFKA_VERSION brings no log4j-api; cannot choose log4j2 jars"
    [[ -n "$slf4j_version" ]] || die "kafka_2.13:$KAFKA_VERSION brings no slf4j-api"
    slf4j_major="${slf4j_version%%.*}"
    [[ "$slf4j_major" == 1 || "$slf4j_major" == 2 ]] || die "unexpected slf4j version $slf4j_version"

    # 2. Copy the broker's runtime jars plus the log4j2 binding, core and 1.2 bridge.
    run_mvn "$tmp/mvn-copy.log" -Dkafka.version="$KAFKA_VERSION" \
        -Dlog4j2.version="$log4j_version" -Dslf4j.major="$slf4j_major" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/libs" \
        || die "Maven could not copy the Kafka $KAFKA_VERSION jars"

    local binding=log4j-slf4j-impl jar
    [[ "$slf4j_major" == 2 ]] && binding=log4j-slf4j2-impl
    for jar in "kafka_2.13-$KAFKA_VERSION" "kafka-clients-$KAFKA_VERSION" \
               "log4j-api-$log4j_version" "log4j-core-$log4j_version" \
               "log4j-1.2-api-$log4j_version" "$binding-$log4j_version" "slf4j-api-$slf4j_version"; do
        [[ -f "$tmp/libs/$jar.jar" ]] || die "fetched jar set is incomplete: $jar.jar missing"
    done
    ls "$tmp/libs" >"$tmp/jars.txt"

    rm -rf "$KAFKA_HOME"
    mv "$tmp" "$KAFKA_HOME"
    trap - EXIT
    {
        echo "kafka=$KAFKA_VERSION"
        echo "log4j2=$log4j_version"
        echo "slf4j=$slf4j_version ($binding)"
        echo "jars=$(wc -l <"$KAFKA_HOME/jars.txt")"
        echo "fetched=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } >"$MARKER.tmp"
    mv "$MARKER.tmp" "$MARKER"       # written last: its presence means "complete"
    log "fetched $(wc -l <"$KAFKA_HOME/jars.txt") jars (log4j2 $log4j_version, slf4j $slf4j_version) into $LIBS_DIR in $((SECONDS - started)) s"
}

# ---------------------------------------------------------------------------------- config

write_config() {
    mkdir -p "$RUN_DIR" "$DATA_DIR" "$LOGS_DIR"
    cat >"$PROPS_FILE" <<EOF
# Generated by deploy/kafka/kafka.sh on every start; edit the script, not this file.
# Single-node KRaft: this one JVM is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT$(secure_listener)
advertised.listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT$(secure_listener)
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT$(secure_protocol)
$(secure_settings)

log.dirs=$DATA_DIR

# Topics are created explicitly by the project.
auto.create.topics.enable=false
num.partitions=6
default.replication.factor=1
min.insync.replicas=1

# Internal topics on one node: replication factor 1 (transactions need min ISR 1 too).
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=12
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Fast group joins for tests; allow short client session timeouts.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000

log.retention.hours=168
log.retention.check.interval.ms=300000

# Small machine: few threads.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
EOF

    cat >"$LOG4J_FILE" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by deploy/kafka/kafka.sh. The broker logs to files, never to stdout. -->
<Configuration status="warn" name="msgkpi-kafka">
  <Appenders>
    <RollingFile name="server" fileName="${sys:kafka.logs.dir}/server.log"
                 filePattern="${sys:kafka.logs.dir}/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="20 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="server"/></Root>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="kafka.authorizer.logger" level="warn"/>
    <Logger name="org.apache.kafka.clients.NetworkClient" level="warn"/>
  </Loggers>
</Configuration>
EOF
}

# Java readiness probe: compiled once into the run dir, run with the broker's own jars.
# Ready = an Admin client sees at least one (unfenced) broker and a controller, and the
# cluster accepts a validate-only topic creation. A TCP connect alone is too early.
READY_SRC='import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.Node;

/** Usage: BrokerReady <bootstrap> <timeout seconds> <broker pid>. Exit 0 ready, 2 timeout, 3 broker died. */
public class BrokerReady {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[1]));
        long pid = Long.parseLong(args[2]);
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("client.id", "msgkpi-ready-check");
        p.put("request.timeout.ms", "3000");
        p.put("default.api.timeout.ms", "5000");
        p.put("reconnect.backoff.ms", "200");
        p.put("reconnect.backoff.max.ms", "500");
        String last = "no attempt yet";
        try (Admin admin = Admin.create(p)) {
            while (System.nanoTime() < deadline) {
                if (pid > 0 && !ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) {
                    System.err.println("broker process " + pid + " exited");
                    System.exit(3);
                }
                try {
                    DescribeClusterResult d = admin.describeCluster(new DescribeClusterOptions().timeoutMs(3000));
                    Collection<Node> nodes = d.nodes().get(4, TimeUnit.SECONDS);
                    Node controller = d.controller().get(4, TimeUnit.SECONDS);
                    if (nodes.isEmpty() || controller == null || controller.isEmpty()) {
                        last = "no live broker or controller in metadata yet";
                    } else {
                        admin.createTopics(List.of(new NewTopic("__msgkpi_ready_probe", 1, (short) 1)),
                                new CreateTopicsOptions().validateOnly(true).timeoutMs(3000))
                            .all().get(4, TimeUnit.SECONDS);
                        System.out.println("cluster " + d.clusterId().get() + ", brokers " + nodes);
                        admin.close(Duration.ofSeconds(2));
                        System.exit(0);
                    }
                } catch (Exception e) {
                    last = String.valueOf(e.getCause() != null ? e.getCause() : e);
                }
                Thread.sleep(500);
            }
            System.err.println("not ready: " + last);
            admin.close(Duration.ofSeconds(2));
        }
        System.exit(2);
    }
}
'

ensure_ready_check() {
    mkdir -p "$READY_DIR"
    local src="$READY_DIR/BrokerReady.java"
    if ! printf '%s' "$READY_SRC" | cmp -s - "$src"; then
        printf '%s' "$READY_SRC" >"$src"
        rm -f "$READY_DIR/BrokerReady.class"
    fi
    if [[ ! -f "$READY_DIR/BrokerReady.class" ]]; then
        javac -nowarn -cp "$LIBS_DIR/*" -d "$READY_DIR" "$src" || die "could not compile the readiness probe"
    fi
}

# Wait until the broker with pid $1 serves metadata, or fail after $2 seconds.
wait_ready() {
    local pid="$1" timeout="$2" deadline=$((SECONDS + $2)) rc=0
    while ! port_open; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log_tail
            die "the broker (pid $pid) exited during startup; see $LOGS_DIR/server.log"
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail
            die "the broker did not accept connections on $HOST:$PORT within $timeout s (pid $pid still running; '$0 stop' stops it)"
        fi
        sleep 0.5
    done
    local left=$((deadline - SECONDS))
    ((left > 0)) || left=1
    java -Xmx64m -XX:TieredStopAtLevel=1 -Dorg.apache.logging.log4j.level=OFF \
        -Dlog4j2.statusLoggerLevel=OFF -cp "$LIBS_DIR/*:$READY_DIR" BrokerReady \
        "$HOST:$PORT" "$left" "$pid" >/dev/null || rc=$?
    case "$rc" in
        0) return 0 ;;
        3) show_log_tail; die "the broker (pid $pid) exited during startup; see $LOGS_DIR/server.log" ;;
        *) show_log_tail; die "the broker on $HOST:$PORT was not ready to serve metadata within $timeout s (pid $pid still running; '$0 stop' stops it)" ;;
    esac
}


# ---------------------------------------------------------------------------------- secure mode

secure_listener() {
    ((SECURE)) && printf ',SASL_SSL://%s:%s' "$HOST" "$SECURE_PORT"
    return 0
}

secure_protocol() {
    ((SECURE)) && printf ',SASL_SSL:SASL_SSL'
    return 0
}

secure_settings() {
    ((SECURE)) || return 0
    local store_password
    store_password="$(cat "$TLS_DIR/store-password")"
    cat <<EOF
# Secure mode: clients authenticate with SCRAM over TLS on the SASL_SSL listener.
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/broker.p12
ssl.keystore.password=$store_password
ssl.key.password=$store_password
ssl.truststore.type=PKCS12
ssl.truststore.location=$TLS_DIR/truststore.p12
ssl.truststore.password=$store_password
ssl.client.auth=none
EOF
}

random_secret() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

# A throwaway CA, the broker's key pair signed by it (SAN 127.0.0.1 and localhost), a
# truststore with the CA, and the CA in PEM for Python's ssl. Made once, with the storage.
make_tls() {
    command -v keytool >/dev/null || die "keytool (Java 17+) is required for the secured broker"
    rm -rf "$TLS_DIR"
    mkdir -p "$TLS_DIR"
    chmod 700 "$TLS_DIR"
    local pw dir="$TLS_DIR" san="SAN=ip:$HOST,ip:127.0.0.1,dns:localhost"
    pw="$(random_secret)"
    printf '%s' "$pw" >"$dir/store-password"
    local kt=(keytool -noprompt -storetype PKCS12 -storepass "$pw" -keypass "$pw")
    {
        "${kt[@]}" -genkeypair -alias ca -keyalg RSA -keysize 2048 -validity 3650 \
            -dname "CN=msgkpi throwaway local CA" -ext bc:c=ca:true \
            -ext ku:c=keyCertSign,cRLSign -keystore "$dir/ca.p12"
        "${kt[@]}" -exportcert -rfc -alias ca -keystore "$dir/ca.p12" -file "$dir/ca.pem"
        "${kt[@]}" -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity 3650 \
            -dname "CN=localhost" -ext "$san" -keystore "$dir/broker.p12"
        "${kt[@]}" -certreq -alias broker -keystore "$dir/broker.p12" -file "$dir/broker.csr"
        "${kt[@]}" -gencert -alias ca -keystore "$dir/ca.p12" -infile "$dir/broker.csr" \
            -outfile "$dir/broker.pem" -rfc -validity 3650 -ext "$san" \
            -ext ku:c=digitalSignature,keyEncipherment -ext eku=serverAuth
        "${kt[@]}" -importcert -alias ca -file "$dir/ca.pem" -keystore "$dir/broker.p12"
        "${kt[@]}" -importcert -alias broker -file "$dir/broker.pem" -keystore "$dir/broker.p12"
        "${kt[@]}" -importcert -alias ca -file "$dir/ca.pem" -keystore "$dir/truststore.p12"
    } >"$dir/keytool.log" 2>&1 || { cat "$dir/keytool.log" >&2; die "keytool failed"; }
    [[ -s "$dir/ca.pem" && -s "$dir/broker.p12" && -s "$dir/truststore.p12" ]] \
        || die "keytool could not make the throwaway CA and keystores in $dir"
}

# The SCRAM user's password (made once) and the settings file for msgkpi's clients.
make_client_env() {
    mkdir -p "$RUN_DIR/client"
    chmod 700 "$RUN_DIR/client"
    [[ -s "$RUN_DIR/client/password" ]] || (umask 077 && random_secret >"$RUN_DIR/client/password")
    cat >"$CLIENT_ENV_FILE" <<EOF
MSGKPI_KAFKA_BOOTSTRAP=$HOST:$SECURE_PORT
MSGKPI_KAFKA_SECURITY_PROTOCOL=SASL_SSL
MSGKPI_KAFKA_SASL_MECHANISM=SCRAM-SHA-256
MSGKPI_KAFKA_SASL_USERNAME=$SCRAM_USER
MSGKPI_KAFKA_SASL_PASSWORD_FILE=$RUN_DIR/client/password
MSGKPI_KAFKA_SSL_CA_FILE=$TLS_DIR/ca.pem
EOF
}

# Arguments for `StorageTool format` that add the SCRAM user (both mechanisms).
scram_format_args() {
    SCRAM_ARGS=()
    ((SECURE)) || return 0
    local pw
    pw="$(cat "$RUN_DIR/client/password")"
    SCRAM_ARGS=(--add-scram "SCRAM-SHA-256=[name=$SCRAM_USER,password=$pw]"
                --add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$pw]")
}

cmd_env_secure() {
    [[ -s "$CLIENT_ENV_FILE" ]] || die "the secured broker was never started here ('$0 start-secure')"
    cat "$CLIENT_ENV_FILE"
}

# ---------------------------------------------------------------------------------- commands

cmd_fetch() {
    take_lock
    do_fetch
    [[ -f "$MARKER" ]] && log "Kafka $KAFKA_VERSION jars ready in $LIBS_DIR"
}

cmd_start() {
    take_lock
    local started=$SECONDS pid
    do_fetch

    if pid="$(our_pid)"; then
        local running_on
        running_on="$(cat "$RUNNING_ON_FILE" 2>/dev/null || true)"
        if [[ -n "$running_on" && "$running_on" != "$HOST:$PORT" ]]; then
            die "the broker started from $CACHE_DIR (pid $pid) listens on $running_on, not $HOST:$PORT; stop it first or use another MSGKPI_CACHE_DIR"
        fi
        if port_open; then
            log "broker already running (pid $pid) on $HOST:$PORT"
            return 0
        fi
        log "broker (pid $pid) is starting; waiting for it"
        ensure_ready_check
        wait_ready "$pid" "$START_TIMEOUT"
        log "broker ready on $HOST:$PORT (pid $pid)"
        return 0
    fi
    rm -f "$PID_FILE"
    if port_open; then
        log "something already accepts connections on $HOST:$PORT; not starting another broker"
        return 0
    fi

    if ((SECURE)); then
        mkdir -p "$RUN_DIR"
        if [[ ! -f "$DATA_DIR/meta.properties" ]]; then
            make_tls
            rm -f "$RUN_DIR/client/password"   # a new user with fresh storage
        fi
        [[ -s "$TLS_DIR/store-password" ]] || die "$TLS_DIR is incomplete; run '$0 reset-secure'"
        make_client_env
    fi
    write_config
    ensure_ready_check
    local cp="$LIBS_DIR/*"

    if [[ -f "$DATA_DIR/meta.properties" && -f "$FORMATTED_FILE" ]]; then
        local formatted_for
        formatted_for="$(sed -n 's/^bootstrap=//p' "$FORMATTED_FILE")"
        if [[ "$formatted_for" != "$HOST:$PORT" ]]; then
            die "storage in $DATA_DIR was formatted for $formatted_for , not $HOST:$PORT; run '$0 reset' first or use another MSGKPI_CACHE_DIR"
        fi
    fi
    if [[ ! -f "$DATA_DIR/meta.properties" ]]; then
        local cluster_id
        cluster_id="$(java -cp "$cp" -Dorg.apache.logging.log4j.level=OFF kafka.tools.StorageTool random-uuid)"
        log "formatting new storage in $DATA_DIR (cluster id $cluster_id)"
        scram_format_args
        java -cp "$cp" -Dlog4j2.configurationFile="$LOG4J_FILE" -Dkafka.logs.dir="$LOGS_DIR" \
            kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$PROPS_FILE" \
            "${SCRAM_ARGS[@]}" >>"$OUT_FILE" 2>&1 \
            || { show_log_tail; die "storage format failed"; }
        printf 'bootstrap=%s\nkafka=%s\ncluster.id=%s\n' "$HOST:$PORT" "$KAFKA_VERSION" "$cluster_id" >"$FORMATTED_FILE"
    fi

    # shellcheck disable=SC2086  # HEAP_OPTS is a list of JVM options
    (
        cd "$RUN_DIR"
        exec setsid nohup java $HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
            -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
            -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$LOG4J_FILE" -Dkafka.logs.dir="$LOGS_DIR" \
            -cp "$cp" kafka.Kafka "$PROPS_FILE" </dev/null >>"$OUT_FILE" 2>&1 9>&-
    ) &
    pid=$!
    echo "$pid" >"$PID_FILE"
    echo "$HOST:$PORT" >"$RUNNING_ON_FILE"
    log "started Kafka $KAFKA_VERSION (pid $pid) on $HOST:$PORT, controller $HOST:$CONTROLLER_PORT; log $LOGS_DIR/server.log"

    wait_ready "$pid" "$START_TIMEOUT"
    log "broker ready on $HOST:$PORT after $((SECONDS - started)) s"
    if ((SECURE)); then
        log "SASL_SSL listener on $HOST:$SECURE_PORT (SCRAM user $SCRAM_USER); client settings: $CLIENT_ENV_FILE"
    fi
}

stop_broker() {
    local pid
    if ! pid="$(our_pid)"; then
        rm -f "$PID_FILE"
        log "broker not running (nothing started by this script)"
        return 0
    fi
    log "stopping broker (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "broker did not stop within $STOP_TIMEOUT s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
    rm -f "$PID_FILE" "$RUNNING_ON_FILE"
    log "broker stopped"
}

cmd_stop() {
    take_lock
    stop_broker
}

cmd_status() {
    local pid
    if pid="$(our_pid)"; then
        local running_on
        running_on="$(cat "$RUNNING_ON_FILE" 2>/dev/null || echo "$HOST:$PORT")"
        if [[ "$running_on" != "$HOST:$PORT" ]]; then
            echo "not running on $HOST:$PORT (this cache's broker, pid $pid, listens on $running_on)"
            return 1
        fi
        if port_open; then
            echo "running (pid $pid) on $running_on"
        else
            echo "running (pid $pid, starting; $running_on not accepting connections yet)"
        fi
        return 0
    fi
    if port_open; then
        echo "running on $HOST:$PORT (not started by this script)"
        return 0
    fi
    echo "not running"
    return 1
}

cmd_reset() {
    take_lock
    stop_broker
    rm -rf "$DATA_DIR" "$FORMATTED_FILE"
    if ((SECURE)); then
        rm -rf "$TLS_DIR" "$RUN_DIR/client" "$CLIENT_ENV_FILE"
    fi
    log "deleted $DATA_DIR; the next start formats fresh storage"
}

case "${1:-}" in
    fetch) cmd_fetch ;;
    start | start-secure) cmd_start ;;
    stop | stop-secure) cmd_stop ;;
    status | status-secure) cmd_status ;;
    reset | reset-secure) cmd_reset ;;
    env-secure) cmd_env_secure ;;
    *)
        echo "usage: $0 {fetch|start|stop|status|reset|start-secure|stop-secure|status-secure|reset-secure|env-secure}" >&2
        exit 2
        ;;
esac
