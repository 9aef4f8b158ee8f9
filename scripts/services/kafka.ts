/**
 * Dev/test harness: a real single-node Apache Kafka broker (KRaft, no ZooKeeper, no Docker).
 *
 * The broker's jars come from Maven Central through scripts/kafka/pom.xml and are cached
 * outside the git tree (see kafka-jars.ts); every start gets a fresh, throw-away storage directory.
 * The JVM itself is managed by kafka-process.ts.
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ensureKafkaJars, locateKafkaJars } from './kafka-jars.js';
import { KafkaProcess } from './kafka-process.js';

export interface KafkaHandle {
  brokers: string[];
  external: boolean;
  /** Stop the broker for good and delete its data, running or paused. Idempotent; external: no-op. */
  stop(): Promise<void>;
  /** Stop the broker JVM but keep its data and ports (a broker outage). Owned brokers only; throws for external (KAFKA_BROKERS). */
  pause(): Promise<void>;
  /** Start the same broker again on the same ports with the same data; resolves when a kafkajs admin can list topics. */
  resume(): Promise<void>;
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

/**
 * KAFKA_BROKERS (comma list) if set -> external handle (stop is a no-op, pause/resume throw).
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
    return { ok: true, handle: new ExternalKafka(external) };
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
// Broker setup (the JVM itself: kafka-process.ts)

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
  try {
    const ports = await freePorts();
    await writeFile(files.config, serverProperties(ports, path.join(workDir, 'data')));
    await writeFile(files.log4j, LOG4J2_PROPERTIES);
    const broker = new KafkaProcess({
      java,
      jvmArgs: ['-cp', path.join(libDir, '*'), `-Dlog4j2.configurationFile=${files.log4j}`],
      configPath: files.config,
      logPath: files.log,
      brokers: [`127.0.0.1:${ports.broker}`],
      ports: [ports.broker, ports.controller],
    });
    await broker.format();
    await broker.start(); // stops the JVM again if it never gets ready
    const handle = new OwnedKafka(broker, workDir, log);
    log(`broker ${handle.brokers.join(',')} ready in ${seconds(started)} (logs: ${files.log})`);
    return handle;
  } catch (err) {
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


// ---------------------------------------------------------------------------------------------
// Handles

/** A broker this process started: stop() ends it for good, pause()/resume() simulate an outage. */
class OwnedKafka implements KafkaHandle {
  readonly external = false;
  readonly brokers: string[];
  private stopped = false;
  /** pause/resume/stop run one at a time, in call order */
  private queue: Promise<unknown> = Promise.resolve();
  /**
   * Last resort when the caller never calls stop(): an orphaned JVM would keep its ports and
   * memory forever. 'exit' handlers must be synchronous, hence SIGKILL and rmSync. Works
   * whether the broker is running or paused (then there is only the directory to remove).
   */
  private readonly onExit = (): void => {
    this.broker.killNow();
    try {
      rmSync(this.workDir, { recursive: true, force: true });
    } catch {
      // The process is exiting; a leftover temp dir is the OS's to clean.
    }
  };

  constructor(
    private readonly broker: KafkaProcess,
    private readonly workDir: string,
    private readonly log: (msg: string) => void,
  ) {
    this.brokers = broker.brokers;
    process.on('exit', this.onExit);
  }

  stop(): Promise<void> {
    return this.serial(async () => {
      if (this.stopped) return;
      this.stopped = true;
      process.off('exit', this.onExit);
      await this.broker.stop();
      await rm(this.workDir, { recursive: true, force: true });
    });
  }

  /** Stops the JVM (SIGTERM, SIGKILL after a few seconds); config and KRaft storage stay. No-op if not running. */
  pause(): Promise<void> {
    return this.serial(async () => {
      this.assertNotStopped('pause');
      if (!this.broker.running) return;
      const pid = this.broker.pid;
      const started = Date.now();
      await this.broker.stop();
      this.log(`paused broker ${this.brokers.join(',')} in ${seconds(started)} (pid ${String(pid)} exited; data kept in ${this.workDir})`);
    });
  }

  /** Starts `kafka.Kafka` again on the same server.properties (no re-format) unless it is running, then waits until ready. */
  resume(): Promise<void> {
    return this.serial(async () => {
      this.assertNotStopped('resume');
      if (this.broker.running) {
        await this.broker.ready();
        return;
      }
      const started = Date.now();
      await this.broker.start();
      this.log(`resumed broker ${this.brokers.join(',')} in ${seconds(started)} (pid ${String(this.broker.pid)})`);
    });
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const result = this.queue.then(op);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private assertNotStopped(what: string): void {
    if (this.stopped) throw new Error(`cannot ${what} Kafka broker ${this.brokers.join(',')}: it was stopped (stop() is final)`);
  }
}

/** Brokers from KAFKA_BROKERS: never stopped, paused or restarted by us. */
class ExternalKafka implements KafkaHandle {
  readonly external = true;
  constructor(readonly brokers: string[]) {}
  async stop(): Promise<void> {
    // not ours
  }
  async pause(): Promise<void> {
    throw new Error(`cannot pause Kafka ${this.brokers.join(',')}: it is external (KAFKA_BROKERS), not started by this process`);
  }
  async resume(): Promise<void> {
    throw new Error(`cannot resume Kafka ${this.brokers.join(',')}: it is external (KAFKA_BROKERS), not started by this process`);
  }
}

function seconds(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)}s`;
}
