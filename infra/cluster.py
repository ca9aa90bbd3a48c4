"""A real Apache Kafka cluster on loopback: KRaft, N combined broker+controller nodes.

The broker jars (``org.apache.kafka:kafka_2.13``, pinned below, with their
dependencies and a log4j2 binding) are resolved by Maven into a cache once
(``~/.cache/voicestream/kafka-<version>``, or ``$VOICESTREAM_KAFKA_HOME``).
Each node runs ``kafka.Kafka`` in its own JVM with its own data folder under
the cluster folder; the cluster's ports and id are written to
``cluster.json`` there, so a node restarted after a kill comes back on the
same address with its data.

Topic defaults follow what voicestream promises: replication factor
``min(3, N)`` and ``min.insync.replicas`` 2 when N >= 3, so that a record
acknowledged with ``acks=all`` survives the loss of one node. The broker's
``group.min.session.timeout.ms`` is lowered to 1 s so that workers may use
session timeouts short enough to move a killed worker's partitions within 5 s.

With ``users`` the cluster is secured: clients connect over ``SASL_SSL``
(TLS with a certificate from a CA the cluster makes under its folder,
:mod:`infra.tls`; SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN), the SCRAM
credentials are written at format time, the brokers talk to each other as
the ``admin`` super user, and Kafka's ``StandardAuthorizer`` refuses what no
ACL allows. The controller listener stays plaintext on loopback.

Used by ``voicestream cluster`` and by the tests (:class:`KafkaCluster`:
start, kill a node with SIGKILL, restart it, stop).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from infra import logs
from infra.broker import BrokerError, _die_with_parent, free_port
from infra.tls import issue, make_ca
from streams.connection import Connection, Security

log = logs.get("voicestream.cluster")

#: The Apache Kafka release the cluster runs (Scala 2.13 build).
KAFKA_VERSION = "4.1.1"
#: log4j2 release that binds Kafka's slf4j logging.
LOG4J_VERSION = "2.25.3"
SLF4J_VERSION = "2.0.17"
#: The super user of a secure cluster (the brokers' own identity).
ADMIN = "admin"
#: JVM heap per node; three nodes fit in well under 2 GiB.
HEAP = "-Xms128m -Xmx512m"
_READY_LINE = "Kafka Server started"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>voicestream</groupId>
  <artifactId>kafka-server-jars</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId>
      <version>{slf4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

# Kafka's own logs go to each node's server.log; WARN and above, plus the
# lines that say a node is up, so that the file stays small in long runs.
_LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
"""


class ClusterError(BrokerError):
    """The Kafka cluster could not be set up or did not become ready."""


def kafka_home() -> Path:
    """Return the folder that holds (or will hold) the resolved Kafka jars."""
    env = os.environ.get("VOICESTREAM_KAFKA_HOME")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "voicestream" / f"kafka-{KAFKA_VERSION}"


def resolve_jars(home: Path | None = None) -> Path:
    """Resolve the Kafka server jars with Maven into ``home/lib`` once; return that folder."""
    home = home or kafka_home()
    lib = home / "lib"
    marker = home / "resolved"
    if marker.is_file() and marker.read_text().strip() == KAFKA_VERSION:
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ClusterError("Maven (mvn) is needed to fetch the Kafka jars; install it "
                           "or set VOICESTREAM_KAFKA_HOME to a folder with lib/*.jar")
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(_POM.format(kafka=KAFKA_VERSION, log4j=LOG4J_VERSION,
                                              slf4j=SLF4J_VERSION))
    if lib.exists():
        shutil.rmtree(lib)
    log.info("cluster.resolving", kafka=KAFKA_VERSION, into=str(lib))
    run = subprocess.run(
        [mvn, "-q", "-B", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={lib}", "-DincludeScope=runtime"],
        capture_output=True, text=True, check=False)
    if run.returncode != 0 or not any(lib.glob("kafka_2.13-*.jar")):
        raise ClusterError(f"Maven could not resolve Kafka {KAFKA_VERSION}: "
                           f"{(run.stdout + run.stderr)[-800:]}")
    marker.write_text(KAFKA_VERSION)
    return lib


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


@dataclasses.dataclass(slots=True)
class Node:
    """One combined broker+controller process."""

    node_id: int
    broker_port: int
    controller_port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None
    #: Where the current run's output starts in ``log_file``.
    log_offset: int = 0

    @property
    def running(self) -> bool:
        """Whether the node's JVM is alive."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def log_file(self) -> Path:
        """Where the node's JVM writes its output."""
        return self.folder / "server.log"


class KafkaCluster:
    """N Kafka nodes in KRaft combined mode on ``host``, state under ``folder``."""

    def __init__(self, folder: str | Path, nodes: int = 3, *, host: str = "127.0.0.1",
                 java: str = "java", users: Mapping[str, str] | None = None) -> None:
        if not 1 <= nodes <= 9:
            raise ClusterError("a cluster has 1..9 nodes")
        self.folder = Path(folder).resolve()
        self.host = host
        self.java = java
        self.nodes: list[Node] = []
        self.cluster_id = ""
        self._size = nodes
        #: SCRAM users (name -> password); empty: a plaintext cluster without ACLs.
        self.users = dict(users or {})
        if self.users:
            self.users.setdefault(ADMIN, secrets.token_urlsafe(16))

    @property
    def secure(self) -> bool:
        """Whether clients must use SASL_SSL (the cluster was given users)."""
        return bool(self.users)

    @property
    def cafile(self) -> Path:
        """The CA that signed the brokers' certificates (secure clusters)."""
        return self.folder / "tls" / "ca.pem"

    def security(self, user: str, mechanism: str = "SCRAM-SHA-512") -> Security:
        """The client security settings for ``user`` on this (secure) cluster."""
        return Security(cafile=str(self.cafile), sasl_mechanism=mechanism, username=user,
                        password=self.users[user])

    def connection(self, user: str, mechanism: str = "SCRAM-SHA-512") -> Connection:
        """A connection as ``user``."""
        return Connection.parse(self.url, self.security(user, mechanism))

    # -- layout ------------------------------------------------------------------------

    @property
    def replication_factor(self) -> int:
        """Replication factor of the cluster's topics: min(3, N)."""
        return min(3, self._size)

    @property
    def min_insync_replicas(self) -> int:
        """2 where N >= 3 (one node may fail without refusing acks=all writes), else 1."""
        return 2 if self._size >= 3 else 1

    @property
    def bootstrap(self) -> list[str]:
        """Every node's broker address, ``host:port``."""
        return [f"{self.host}:{n.broker_port}" for n in self.nodes]

    @property
    def url(self) -> str:
        """``kafka://h:p,h:p,...``."""
        return "kafka://" + ",".join(self.bootstrap)

    def _load_or_plan(self) -> None:
        meta = self.folder / "cluster.json"
        if meta.is_file():
            data = json.loads(meta.read_text())
            if len(data["nodes"]) == self._size:
                self.cluster_id = data["cluster_id"]
                # Formatted with these credentials: they stay the cluster's.
                self.users = {**self.users, **data.get("users", {})}
                self.nodes = [Node(n["id"], n["broker_port"], n["controller_port"],
                                   self.folder / f"node-{n['id']}") for n in data["nodes"]]
                return
            raise ClusterError(f"{self.folder} holds a {len(data['nodes'])}-node cluster, "
                               f"not {self._size}; use another --dir")
        self.cluster_id = _cluster_id()
        ports = self._free_ports(2 * self._size)
        self.nodes = [Node(i + 1, ports[2 * i], ports[2 * i + 1], self.folder / f"node-{i + 1}")
                      for i in range(self._size)]
        self.folder.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({
            "kafka": KAFKA_VERSION, "cluster_id": self.cluster_id,
            "nodes": [{"id": n.node_id, "broker_port": n.broker_port,
                       "controller_port": n.controller_port} for n in self.nodes],
            "users": self.users,
        }, indent=2))
        meta.chmod(0o600)

    def _free_ports(self, count: int) -> list[int]:
        ports: set[int] = set()
        while len(ports) < count:
            ports.add(free_port(self.host))
        return sorted(ports)

    def _security_properties(self, node: Node) -> dict[str, object]:
        tls = self.folder / "tls"
        admin = self.users[ADMIN]
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
        plain_users = " ".join(f'user_{u}="{p}"' for u, p in sorted(self.users.items()))
        return {
            "listeners": f"SASL_SSL://{self.host}:{node.broker_port},"
                         f"CONTROLLER://{self.host}:{node.controller_port}",
            "advertised.listeners": f"SASL_SSL://{self.host}:{node.broker_port}",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
                f'{scram} required username="{ADMIN}" password="{admin}";',
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": f"{scram} required;",
            "listener.name.sasl_ssl.plain.sasl.jaas.config":
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{ADMIN}" password="{admin}" {plain_users};',
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": tls / f"broker-{node.node_id}.pem",
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": tls / "ca.pem",
            "authorizer.class.name":
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # Brokers reach the controllers on the loopback plaintext listener, as
            # ANONYMOUS; clients only ever reach the SASL_SSL one.
            "super.users": f"User:{ADMIN};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
        }

    def properties(self, node: Node) -> str:
        """The ``server.properties`` of ``node``."""
        voters = ",".join(f"{n.node_id}@{self.host}:{n.controller_port}" for n in self.nodes)
        rf = self.replication_factor
        lines: dict[str, object] = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{self.host}:{node.broker_port},"
                         f"CONTROLLER://{self.host}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{node.broker_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": node.folder / "data",
            "num.partitions": 4,
            "default.replication.factor": rf,
            "min.insync.replicas": self.min_insync_replicas,
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": 8,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min(2, rf),
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min(2, rf),
            "group.initial.rebalance.delay.ms": 0,
            # Let workers ask for session timeouts short enough to move a killed
            # worker's partitions within 5 s (Kafka's default minimum is 6 s).
            "group.min.session.timeout.ms": 1000,
            # A dead node's partitions get new leaders after 3 s, not 9 s: producers
            # and consumers wait that long (a device's audio stalls that long).
            "broker.session.timeout.ms": 3000,
            "broker.heartbeat.interval.ms": 500,
            "auto.create.topics.enable": "true",
            "log.segment.bytes": 16 * 1024 * 1024,
            "num.network.threads": 2,
            "num.io.threads": 2,
            "log.cleaner.dedupe.buffer.size": 8 * 1024 * 1024,
        }
        if self.secure:
            lines.update(self._security_properties(node))
        return "".join(f"{k}={v}\n" for k, v in lines.items())

    # -- processes ---------------------------------------------------------------------

    def _classpath(self) -> str:
        lib = resolve_jars()
        return os.pathsep.join(str(p) for p in sorted(lib.glob("*.jar")))

    def _jvm(self, main: str, *args: str) -> list[str]:
        return [self.java, *HEAP.split(), "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.folder / 'log4j2.properties'}",
                "-cp", self._classpath(), main, *args]

    def _format(self, node: Node) -> None:
        if (node.folder / "data" / "meta.properties").is_file():
            return
        run = subprocess.run(
            # "=": an id may begin with "-", which would read as an option.
            self._jvm("kafka.tools.StorageTool", "format", f"--cluster-id={self.cluster_id}",
                      "-c", str(node.folder / "server.properties"), "--ignore-formatted",
                      *self._scram_args()),
            capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise ClusterError(f"formatting node {node.node_id} failed: "
                               f"{(run.stdout + run.stderr)[-800:]}")

    def _scram_args(self) -> list[str]:
        return [arg for user, password in sorted(self.users.items())
                for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
                for arg in ("--add-scram", f"{mechanism}=[name={user},password={password}]")]

    def start(self, timeout_s: float = 120.0) -> None:
        """Resolve the jars, format storage where new, start every node, wait until ready."""
        self._load_or_plan()
        (self.folder / "log4j2.properties").write_text(_LOG4J2)
        if self.secure:
            make_ca(self.folder / "tls")
            for node in self.nodes:
                issued = issue(self.folder / "tls", f"broker-{node.node_id}",
                               hosts=(self.host, "localhost"))
                issued.key.unlink()
                issued.cert.unlink()
        for node in self.nodes:
            node.folder.mkdir(parents=True, exist_ok=True)
            (node.folder / "server.properties").write_text(self.properties(node))
            self._format(node)
        for node in self.nodes:
            self._spawn(node)
        self.wait_ready(timeout_s)
        log.info("cluster.started", url=self.url, nodes=len(self.nodes))

    def _spawn(self, node: Node) -> None:
        out = node.log_file.open("ab")
        out.write(f"--- start {time.strftime('%H:%M:%S')} ---\n".encode())
        out.flush()
        node.log_offset = out.tell()
        node.proc = subprocess.Popen(
            self._jvm("kafka.Kafka", str(node.folder / "server.properties")),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        out.close()

    def node(self, node_id: int) -> Node:
        """Return the node with id ``node_id`` (1-based)."""
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise ClusterError(f"no node {node_id}; nodes: {[n.node_id for n in self.nodes]}")

    def _node_ready(self, node: Node) -> bool:
        with node.log_file.open("rb") as f:
            f.seek(node.log_offset)
            if _READY_LINE.encode() not in f.read():
                return False
        with contextlib.suppress(OSError), socket.create_connection(
                (self.host, node.broker_port), timeout=1.0):
            return True
        return False

    def wait_ready(self, timeout_s: float = 120.0, nodes: list[Node] | None = None) -> None:
        """Wait until each node (default: all running ones) says it started and accepts."""
        waiting = list(nodes if nodes is not None else self.nodes)
        deadline = time.monotonic() + timeout_s
        while waiting:
            for node in list(waiting):
                if not node.running:
                    raise ClusterError(f"node {node.node_id} exited: {self._tail(node)}")
                if self._node_ready(node):
                    waiting.remove(node)
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"nodes {[n.node_id for n in waiting]} not ready after "
                                   f"{timeout_s:.0f} s: {self._tail(waiting[0])}")
            time.sleep(0.2)

    def _tail(self, node: Node) -> str:
        try:
            return node.log_file.read_text(errors="replace")[-800:]
        except OSError:
            return "(no log)"

    def kill(self, node_id: int) -> None:
        """SIGKILL one node: a crash, no clean shutdown."""
        node = self.node(node_id)
        if node.proc is not None and node.running:
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait()
        log.info("cluster.node_killed", node=node_id)

    def restart(self, node_id: int, timeout_s: float = 120.0) -> None:
        """Start a stopped or killed node again on its address, with its data."""
        node = self.node(node_id)
        if node.running:
            return
        self._spawn(node)
        self.wait_ready(timeout_s, [node])
        log.info("cluster.node_restarted", node=node_id)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop every node: SIGTERM (a controlled shutdown), then SIGKILL after ``timeout_s``."""
        for node in self.nodes:
            if node.running and node.proc is not None:
                node.proc.terminate()
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()
            node.proc = None
        log.info("cluster.stopped", url=self.url)

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
