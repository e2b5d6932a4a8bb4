#!/usr/bin/env bash
# Local single-node Apache Kafka broker (KRaft, broker+controller) for development and
# integration tests, without Docker. The broker jars come from Maven Central through Maven
# (deploy/kafka/pom.xml) into a git-ignored cache; nothing fetched is committed.
#
# Usage: deploy/kafka/kafka.sh {fetch|start|stop|status|reset}
#   fetch   download the broker jars once (no-op when already complete)
#   start   fetch if needed, format storage once, start the broker in the background and
#           wait until it serves metadata (no-op when something already listens on the port)
#   stop    stop the broker started by this script (SIGTERM, then SIGKILL after 30 s)
#   status  print running / not running; exit 0 when running, 1 otherwise
#   reset   stop and delete the broker's data (next start formats fresh storage)
#
# Environment:
#   MSGKPI_KAFKA_BOOTSTRAP   host:port of the PLAINTEXT listener (default 127.0.0.1:9092)
#   MSGKPI_KAFKA_CONTROLLER_PORT  port of the KRaft controller listener (default: the broker's
#                            port + 100, e.g. 9192; not port + 1, which is Alertmanager's 9093)
#   MSGKPI_CACHE_DIR         cache folder (default <repo>/.cache)
#   MSGKPI_KAFKA_VERSION     org.apache.kafka:kafka_2.13 version (default below)
#   MSGKPI_KAFKA_HEAP_OPTS   JVM heap options (default -Xmx512m -Xms256m)
#   MSGKPI_KAFKA_START_TIMEOUT  seconds to wait for readiness (default 90)
set -euo pipefail

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
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT

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
        java -cp "$cp" -Dlog4j2.configurationFile="$LOG4J_FILE" -Dkafka.logs.dir="$LOGS_DIR" \
            kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$PROPS_FILE" >>"$OUT_FILE" 2>&1 \
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
    log "deleted $DATA_DIR; the next start formats fresh storage"
}

case "${1:-}" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    *)
        echo "usage: $0 {fetch|start|stop|status|reset}" >&2
        exit 2
        ;;
esac
