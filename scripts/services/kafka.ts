/**
 * Dev/test harness: a real single-node Apache Kafka broker (KRaft, no ZooKeeper, no Docker).
 *
 * The broker's jars come from Maven Central through scripts/kafka/pom.xml and are cached
 * outside the git tree (see kafka-jars.ts); every start gets a fresh, throw-away storage directory.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { ensureKafkaJars, locateKafkaJars } from './kafka-jars.js';

export interface KafkaHandle {
  brokers: string[];
  external: boolean;
  stop(): Promise<void>;
}

export type KafkaAvailability = { ok: true; handle: KafkaHandle } | { ok: false; reason: string };

export interface StartKafkaOptions {
  /** Progress messages (fetching jars, formatting, started). Defaults to stderr. */
  log?: (msg: string) => void;
  /** Parent directory for the per-run temp dir (config, storage, broker.log). Defaults to os.tmpdir(). */
  dataDir?: string;
}

/** Kafka 4.x brokers refuse to run on anything older. */
const MIN_JAVA_MAJOR = 17;
const READY_TIMEOUT_MS = 90_000;
const STOP_GRACE_MS = 5_000;
const LOG_TAIL_LINES = 40;
const READINESS_GROUP = 'concord-kafka-harness-readiness';

/**
 * KAFKA_BROKERS (comma list) if set -> external handle (stop is a no-op).
 * Else, with `java` (and `mvn` when the jar cache is cold): fetch the broker jars once into
 * `${CONCORD_CACHE_DIR ?? ~/.cache/concord}/kafka-<version>/lib`, format a fresh KRaft storage
 * dir in a temp dir, start the broker on free loopback ports and wait until an admin client
 * can talk to it. Missing tools give { ok: false, reason }; a broker that fails to fetch or
 * start throws, with the tail of its output, so a broken setup is never silently skipped.
 */
export async function startKafka(opts: StartKafkaOptions = {}): Promise<KafkaAvailability> {
  const log = opts.log ?? ((msg: string) => process.stderr.write(`[kafka] ${msg}\n`));

  const external = externalBrokers();
  if (external) {
    log(`using external brokers from KAFKA_BROKERS: ${external.join(',')}`);
    return { ok: true, handle: { brokers: external, external: true, stop: async () => {} } };
  }

  const jars = await locateKafkaJars();
  const java = javaBinary();
  const javaProblem = checkJava(java);
  if (javaProblem) return { ok: false, reason: javaProblem };

  const jarsProblem = await ensureKafkaJars(jars, log);
  if (jarsProblem) return { ok: false, reason: jarsProblem };

  const handle = await launchBroker({ java, libDir: jars.libDir, parentDir: opts.dataDir ?? os.tmpdir(), log });
  return { ok: true, handle };
}

// ---------------------------------------------------------------------------------------------
// Environment and Java

function externalBrokers(): string[] | undefined {
  const brokers = (process.env.KAFKA_BROKERS ?? '')
    .split(',')
    .map((b) => b.trim())
    .filter((b) => b.length > 0);
  return brokers.length > 0 ? brokers : undefined;
}

/** Honour JAVA_HOME like Kafka's own launch scripts do, else whatever `java` is on PATH. */
function javaBinary(): string {
  const home = process.env.JAVA_HOME;
  return home ? path.join(home, 'bin', 'java') : 'java';
}

/** Returns a human reason when Java is missing or too old, else undefined. */
function checkJava(java: string): string | undefined {
  const res = spawnSync(java, ['-version'], { encoding: 'utf8' });
  if (res.error) return `java not found (${java}): install a JDK ${MIN_JAVA_MAJOR}+ or set KAFKA_BROKERS`;
  // `java -version` prints to stderr, e.g. `openjdk version "17.0.15"` or `"1.8.0_392"`.
  const match = /version "(\d+)(?:\.(\d+))?/.exec(`${res.stderr}${res.stdout}`);
  if (!match) return `could not read the Java version from \`${java} -version\`; set KAFKA_BROKERS`;
  const major = Number(match[1]) === 1 ? Number(match[2]) : Number(match[1]);
  if (major < MIN_JAVA_MAJOR) {
    return `Java ${major} found but the Kafka broker needs Java ${MIN_JAVA_MAJOR}+: install a newer JDK (or point JAVA_HOME at one) or set KAFKA_BROKERS`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Broker process

interface LaunchOptions {
  java: string;
  libDir: string;
  parentDir: string;
  log: (msg: string) => void;
}

interface Ports {
  broker: number;
  controller: number;
}

async function launchBroker({ java, libDir, parentDir, log }: LaunchOptions): Promise<KafkaHandle> {
  await mkdir(parentDir, { recursive: true });
  const workDir = await mkdtemp(path.join(parentDir, 'concord-kafka-'));
  const files = {
    config: path.join(workDir, 'server.properties'),
    log4j: path.join(workDir, 'log4j2.properties'),
    log: path.join(workDir, 'broker.log'),
  };
  const started = Date.now();
  let child: ChildProcess | undefined;
  try {
    const ports = await freePorts();
    await writeFile(files.config, serverProperties(ports, path.join(workDir, 'data')));
    await writeFile(files.log4j, LOG4J2_PROPERTIES);
    const jvmArgs = ['-cp', path.join(libDir, '*'), `-Dlog4j2.configurationFile=${files.log4j}`];

    await formatStorage(java, jvmArgs, files.config);
    child = spawnBroker(java, jvmArgs, files.config, files.log);
    const brokers = [`127.0.0.1:${ports.broker}`];
    await waitUntilReady(brokers, child, files.log);
    log(`broker ${brokers[0]} ready in ${((Date.now() - started) / 1000).toFixed(1)}s (logs: ${files.log})`);
    return runningHandle(brokers, child, workDir);
  } catch (err) {
    if (child) await terminate(child);
    await rm(workDir, { recursive: true, force: true });
    throw err;
  }
}

/** Listens on port 0 twice at once (so the two differ), reads the ports and releases them. */
async function freePorts(): Promise<Ports> {
  const servers = [net.createServer(), net.createServer()];
  const ports = await Promise.all(servers.map(listenOnRandomPort));
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return { broker: ports[0] ?? 0, controller: ports[1] ?? 0 };
}

function listenOnRandomPort(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address && typeof address === 'object') resolve(address.port);
      else reject(new Error('could not read a free port'));
    });
  });
}

function serverProperties(ports: Ports, dataDir: string): string {
  const props: Record<string, string | number | boolean> = {
    'process.roles': 'broker,controller',
    'node.id': 1,
    // A static voter set works with both `StorageTool format` flavours (3.x and 4.x).
    'controller.quorum.voters': `1@127.0.0.1:${ports.controller}`,
    listeners: `PLAINTEXT://127.0.0.1:${ports.broker},CONTROLLER://127.0.0.1:${ports.controller}`,
    'advertised.listeners': `PLAINTEXT://127.0.0.1:${ports.broker}`,
    'controller.listener.names': 'CONTROLLER',
    'inter.broker.listener.name': 'PLAINTEXT',
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'log.dirs': dataDir,
    'num.partitions': 1,
    'auto.create.topics.enable': true,
    // Single node: every internal topic must accept replication factor / ISR of 1.
    'offsets.topic.replication.factor': 1,
    'transaction.state.log.replication.factor': 1,
    'transaction.state.log.min.isr': 1,
    'share.coordinator.state.topic.replication.factor': 1,
    'share.coordinator.state.topic.min.isr': 1,
    // Fewer internal partitions and no initial rebalance delay: a test's first consumer
    // group joins in well under a second instead of waiting ~3 s.
    'offsets.topic.num.partitions': 1,
    'transaction.state.log.num.partitions': 1,
    'group.initial.rebalance.delay.ms': 0,
  };
  return Object.entries(props)
    .map(([key, value]) => `${key}=${String(value)}`)
    .join('\n')
    .concat('\n');
}

/** Everything to stdout (which goes to broker.log); INFO keeps enough to diagnose a failed start. */
const LOG4J2_PROPERTIES = `status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
`;

/** A KRaft node refuses to start until its storage carries a cluster id and bootstrap metadata. */
async function formatStorage(java: string, jvmArgs: string[], configPath: string): Promise<void> {
  // Kafka cluster ids are 16 random bytes, base64url without padding (what `random-uuid` prints).
  const clusterId = randomBytes(16).toString('base64url');
  const args = [...jvmArgs, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', configPath];
  const res = await runCaptured(java, args);
  if (res.code !== 0) {
    throw new Error(`kafka StorageTool format failed (exit ${res.code}):\n${tailLines(res.output, LOG_TAIL_LINES)}`);
  }
}

function runCaptured(cmd: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer): void => {
      output += chunk.toString();
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

function spawnBroker(java: string, jvmArgs: string[], configPath: string, logPath: string): ChildProcess {
  // The JVM writes straight into the file, so logging never depends on this event loop.
  const logFd = openSync(logPath, 'a');
  try {
    return spawn(
      java,
      ['-Xms128m', '-Xmx512m', '-XX:+ExitOnOutOfMemoryError', '-Djava.awt.headless=true', ...jvmArgs, 'kafka.Kafka', configPath],
      { stdio: ['ignore', logFd, logFd], detached: false },
    );
  } finally {
    closeSync(logFd);
  }
}

/** Polls with a kafkajs admin until the broker serves metadata and groups, failing fast if the JVM dies. */
async function waitUntilReady(brokers: string[], child: ChildProcess, logPath: string): Promise<void> {
  let death: string | undefined;
  child.once('exit', (code, signal) => (death = signal ? `signal ${signal}` : `exit code ${code}`));
  child.once('error', (err) => (death = `could not start: ${err.message}`));

  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError = 'no attempt made';
  while (Date.now() < deadline) {
    if (death) throw new Error(`Kafka broker died during startup (${death}); last lines of its log:\n${logTail(logPath)}`);
    try {
      await probeBroker(brokers);
      return;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
      await sleep(250);
    }
  }
  throw new Error(
    `Kafka broker not ready after ${READY_TIMEOUT_MS / 1000}s (last error: ${lastError}); last lines of its log:\n${logTail(logPath)}`,
  );
}

async function probeBroker(brokers: string[]): Promise<void> {
  const kafka = new Kafka({
    clientId: 'concord-kafka-harness',
    brokers,
    logLevel: logLevel.NOTHING,
    connectionTimeout: 1_000,
    retry: { retries: 0 },
  });
  const admin = kafka.admin();
  try {
    await admin.connect();
    // Metadata only lists registered, unfenced brokers: an empty list means "not yet".
    const cluster = await admin.describeCluster();
    if (cluster.brokers.length === 0) throw new Error('broker not registered yet');
    // Creates __consumer_offsets and fails until its coordinator has loaded, so the caller's
    // first consumer group joins at once instead of crashing/restarting on "coordinator loading".
    await admin.describeGroups([READINESS_GROUP]);
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

function runningHandle(brokers: string[], child: ChildProcess, workDir: string): KafkaHandle {
  // Last resort when the caller never calls stop(): an orphaned JVM would keep its ports and
  // memory forever. 'exit' handlers must be synchronous, hence SIGKILL and rmSync.
  const onExit = (): void => {
    if (!hasExited(child)) child.kill('SIGKILL');
    try {
      rmSync(workDir, { recursive: true, force: true });
    } catch {
      // The process is exiting; a leftover temp dir is the OS's to clean.
    }
  };
  process.on('exit', onExit);

  let stopping: Promise<void> | undefined;
  return {
    brokers,
    external: false,
    stop: () => {
      stopping ??= (async () => {
        process.off('exit', onExit);
        await terminate(child);
        await rm(workDir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

/** SIGTERM lets the broker shut down cleanly; SIGKILL if it is still around after the grace period. */
async function terminate(child: ChildProcess): Promise<void> {
  if (hasExited(child)) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

/** No pid means spawn itself failed: there is no process to wait for (and no 'exit' will come). */
function hasExited(child: ChildProcess): boolean {
  return child.pid === undefined || child.exitCode !== null || child.signalCode !== null;
}

function logTail(logPath: string): string {
  try {
    return tailLines(readFileSync(logPath, 'utf8'), LOG_TAIL_LINES);
  } catch {
    return '(no broker log written)';
  }
}

function tailLines(text: string, count: number): string {
  return text.trimEnd().split('\n').slice(-count).join('\n');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
