/**
 * The Kafka broker's jars for the dev/test harness (see kafka.ts): fetched from Maven Central
 * through scripts/kafka/pom.xml with `mvn`, once, into a cache outside the git tree.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isAlive } from './ports.js';

const POM_PATH = fileURLToPath(new URL('../kafka/pom.xml', import.meta.url));
const FETCH_TIMEOUT_MS = 5 * 60_000;

/** Where the jars for the pom's Kafka version live (or will, once fetched). */
export interface KafkaJars {
  kafkaVersion: string;
  /** `${CONCORD_CACHE_DIR ?? ~/.cache/concord}/kafka-<version>` */
  cacheDir: string;
  /** The broker's classpath directory, `${cacheDir}/lib`. */
  libDir: string;
  /** Any pom edit (e.g. a log4j bump) changes this, which invalidates the cached jars. */
  pomHash: string;
}

/** Reads the pom (throws if it names no Kafka version); fetches nothing. */
export async function locateKafkaJars(): Promise<KafkaJars> {
  const pom = await readPom();
  const cacheDir = path.join(cacheRoot(), `kafka-${pom.kafkaVersion}`);
  return { kafkaVersion: pom.kafkaVersion, cacheDir, libDir: path.join(cacheDir, 'lib'), pomHash: pom.hash };
}

/**
 * Fetches the jars with mvn unless the cache already holds them for the current pom.
 * Returns a human reason when they are missing and mvn is not installed, else undefined;
 * a fetch that fails throws with the tail of mvn's output.
 */
export async function ensureKafkaJars(jars: KafkaJars, log: (msg: string) => void): Promise<string | undefined> {
  if (await isFetched(jars.cacheDir, jars.pomHash)) return undefined;
  if (!commandExists('mvn')) {
    return 'mvn not found: install Maven (to fetch the Kafka jars) or set KAFKA_BROKERS';
  }
  await fetchJars(jars.cacheDir, jars.pomHash, log);
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Pom and cache layout

function cacheRoot(): string {
  return process.env.CONCORD_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'concord');
}

function commandExists(cmd: string): boolean {
  const res = spawnSync(cmd, ['-version'], { stdio: 'ignore' });
  return !(res.error && (res.error as NodeJS.ErrnoException).code === 'ENOENT');
}

interface PomInfo {
  kafkaVersion: string;
  hash: string;
}

/** The pom is the single source of truth for the version, so bumping it there is enough. */
async function readPom(): Promise<PomInfo> {
  const text = await readFile(POM_PATH, 'utf8');
  const version = /<kafka\.version>\s*([^<\s]+)\s*<\/kafka\.version>/.exec(text)?.[1];
  if (!version) throw new Error(`no <kafka.version> property in ${POM_PATH}`);
  return { kafkaVersion: version, hash: createHash('sha256').update(text).digest('hex') };
}

function markerPath(cacheDir: string): string {
  return path.join(cacheDir, '.fetched');
}

/** The marker is written last, so its presence (with the current pom's hash) means lib/ is whole. */
async function isFetched(cacheDir: string, pomHash: string): Promise<boolean> {
  try {
    return (await readFile(markerPath(cacheDir), 'utf8')).trim() === pomHash;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Fetching

/**
 * Copies the jars into a private staging dir, then swaps it in as lib/ and writes the marker.
 * An interrupted run leaves at most a stale staging dir or an unmarked lib/, both redone next time.
 */
async function fetchJars(cacheDir: string, pomHash: string, log: (msg: string) => void): Promise<void> {
  await mkdir(cacheDir, { recursive: true });
  await removeStaleStaging(cacheDir);
  const staging = path.join(cacheDir, `lib.partial-${process.pid}-${randomBytes(4).toString('hex')}`);
  const started = Date.now();
  log(`fetching Kafka jars with mvn into ${cacheDir} (first run only)...`);
  try {
    await runMaven(['-q', '-B', '-f', POM_PATH, 'dependency:copy-dependencies', `-DoutputDirectory=${staging}`]);
    // Another process may have finished the same fetch meanwhile; keep its copy rather than
    // pulling lib/ out from under a broker it may already be starting.
    if (await isFetched(cacheDir, pomHash)) return;
    const lib = path.join(cacheDir, 'lib');
    await rm(markerPath(cacheDir), { force: true });
    await rm(lib, { recursive: true, force: true });
    await rename(staging, lib);
    const tmpMarker = `${markerPath(cacheDir)}.${process.pid}`;
    await writeFile(tmpMarker, `${pomHash}\n`);
    await rename(tmpMarker, markerPath(cacheDir));
    log(`fetched Kafka jars in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** Staging dirs of fetches whose process died (killed test run, Ctrl-C) would otherwise pile up. */
async function removeStaleStaging(cacheDir: string): Promise<void> {
  for (const entry of await readdir(cacheDir)) {
    const pid = /^lib\.partial-(\d+)-/.exec(entry)?.[1];
    if (pid && !isAlive(Number(pid))) await rm(path.join(cacheDir, entry), { recursive: true, force: true });
  }
}

function runMaven(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('mvn', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer): void => {
      output = (output + chunk.toString()).slice(-8_000);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const timer = setTimeout(() => child.kill('SIGKILL'), FETCH_TIMEOUT_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`could not run mvn: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`mvn ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${output}`));
    });
  });
}
