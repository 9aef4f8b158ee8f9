/**
 * One broker JVM of the Kafka dev/test harness (see kafka.ts): formatting its KRaft storage,
 * starting `kafka.Kafka` and waiting until it serves clients, and stopping it again.
 * The process can be stopped and started any number of times on the same config and data.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { Kafka, logLevel } from 'kafkajs';

const READY_TIMEOUT_MS = 90_000;
const STOP_GRACE_MS = 5_000;
const LOG_TAIL_LINES = 40;
const READINESS_GROUP = 'concord-kafka-harness-readiness';

export interface KafkaProcessOptions {
  java: string;
  /** Classpath and log4j config, shared by the StorageTool and the broker. */
  jvmArgs: string[];
  /** server.properties: node id, listeners and log dirs never change between starts. */
  configPath: string;
  /** The JVM's stdout and stderr; appended to by every start. */
  logPath: string;
  /** Client bootstrap addresses, e.g. `127.0.0.1:<broker port>`. */
  brokers: string[];
  /** Every port the broker listens on (checked to be free before each start). */
  ports: number[];
}

export class KafkaProcess {
  private child: ChildProcess | undefined;

  constructor(private readonly opts: KafkaProcessOptions) {}

  get running(): boolean {
    return this.child !== undefined && !hasExited(this.child);
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get brokers(): string[] {
    return [...this.opts.brokers];
  }

  /** A KRaft node refuses to start until its storage carries a cluster id and bootstrap metadata. Once only. */
  async format(): Promise<void> {
    // Kafka cluster ids are 16 random bytes, base64url without padding (what `random-uuid` prints).
    const clusterId = randomBytes(16).toString('base64url');
    // `--cluster-id=<id>` in one argument: an id may start with '-' (base64url), which the
    // tool's argument parser would otherwise take for an option (about 1 run in 64 failed so).
    const args = [...this.opts.jvmArgs, 'kafka.tools.StorageTool', 'format', `--cluster-id=${clusterId}`, '-c', this.opts.configPath];
    const res = await runCaptured(this.opts.java, args);
    if (res.code !== 0) {
      throw new Error(`kafka StorageTool format failed (exit ${res.code}):\n${tailLines(res.output, LOG_TAIL_LINES)}`);
    }
  }

  /**
   * Spawns the broker and resolves once a kafkajs admin can list topics and describe groups.
   * If it does not get there, the JVM is stopped again and the error carries the tail of its log.
   */
  async start(): Promise<void> {
    if (this.running) throw new Error(`the Kafka broker is already running (pid ${String(this.pid)})`);
    await assertPortsFree(this.opts.ports);
    const child = spawnBroker(this.opts.java, this.opts.jvmArgs, this.opts.configPath, this.opts.logPath);
    this.child = child;
    try {
      await this.ready();
    } catch (err) {
      await terminate(child);
      throw err;
    }
  }

  /** Resolves once the running broker serves admin requests; throws if it is not running or dies first. */
  async ready(): Promise<void> {
    if (!this.child || !this.running) throw new Error('the Kafka broker is not running');
    await waitUntilReady(this.opts.brokers, this.child, this.opts.logPath);
  }

  /** SIGTERM lets the broker shut down cleanly; SIGKILL if it is still around after a few seconds. No-op if not running. */
  async stop(): Promise<void> {
    if (this.child) await terminate(this.child);
  }

  /** For process 'exit' handlers, which must be synchronous: SIGKILL without waiting. */
  killNow(): void {
    if (this.child && !hasExited(this.child)) this.child.kill('SIGKILL');
  }
}

/** The ports came free when the broker stopped; someone else may have taken them meanwhile. */
async function assertPortsFree(ports: number[]): Promise<void> {
  for (const port of ports) {
    const server = net.createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', resolve);
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      throw new Error(`cannot start the Kafka broker: port ${port} is not free (${code}); another process took it`);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
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
    await admin.listTopics();
    // Creates __consumer_offsets (or, after a restart, reloads it) and fails until its coordinator
    // has loaded, so the caller's first consumer group joins at once instead of crashing/restarting
    // on "coordinator loading".
    await admin.describeGroups([READINESS_GROUP]);
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

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
