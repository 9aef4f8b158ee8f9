import type { SideColumn } from '../../queues/validate.js';
import { categoryOf, quoteIdent, rowText, type Dialect } from './normalize.js';

/**
 * Keys other than one integer column (uuid, text, dates, composite keys...): the validator
 * segments them over a HASH of the key instead of the key itself. `kh` is the low 62 bits
 * of the 64 bits of the md5 of the key's canonical text that the row checksum takes too
 * (`Dialect.textHash64`: digest bytes 8..15, little-endian), the key columns' canonical texts
 * joined as `rowText` joins a row: a non-negative BIGINT computed identically by PostgreSQL
 * and DuckDB. 62 bits, not 63 or 64, so that the whole space `[0, 2^62)` has
 * an upper bound that is itself a signed BIGINT (`kh < $hi` binds 2^62). Bisection then
 * runs unchanged in hash space; there is no index on kh, so each checksum or download is
 * a full scan (the fan-out of rows / threshold keeps them to a few per check).
 *
 * Rows are reported by the key's PostgreSQL text (one key column) or a JSON array of the
 * key columns' texts (composite keys), derived in JS from the canonical texts both sides
 * already compute identically (numeric: its own text, see keyPartsSql), so the two sides
 * always spell a key the same way.
 */
export const KH_BITS = 62;
/** Bounds of the hash space: kh is in `[0, KH_SPACE)`. */
export const KH_SPACE = 1n << BigInt(KH_BITS);
const KH_MASK = (KH_SPACE - 1n).toString();
/** The kh column of the scans' inner subquery (named so it cannot clash with a real column). */
export const KH = quoteIdent('__concord_kh');

export const keyColumnsOf = (columns: readonly SideColumn[]): SideColumn[] => columns.filter((c) => c.isKey);

/** The benchmarked path: one integer key column, segmented over the key itself (index range scans). */
export function isIntegerKey(columns: readonly SideColumn[]): boolean {
  const keys = keyColumnsOf(columns);
  return keys.length === 1 && categoryOf(keys[0]!.pgType) === 'int';
}

/**
 * Why rows of this table cannot be told apart by key, or undefined. Floating-point keys are
 * refused because their canonical text (`%.15g`) does not round-trip, so a reported key
 * could not be looked up or repaired; array keys because their canonical text is JSON.
 */
export function keyUnsupported(columns: readonly SideColumn[]): string | undefined {
  const keys = keyColumnsOf(columns);
  if (keys.length === 0) return 'needs a primary key (has none)';
  const bad = keys.find((c) => ['float4', 'float8', 'array'].includes(categoryOf(c.pgType)));
  if (bad) return `cannot identify rows by ${bad.name} (${bad.pgType}): floating-point and array key columns are not supported`;
  return undefined;
}

/** kh of the current row (columns referenced unqualified) as SQL. */
export function khSql(d: Dialect, keys: readonly SideColumn[], duckTypes: Record<string, string> = {}): string {
  const h = d.textHash64(rowText(d, keys, duckTypes));
  // PostgreSQL: signed BIGINT & mask; DuckDB: UBIGINT & mask, then BIGINT. Same 62 bits.
  return d.name === 'postgres' ? `(${h} & ${KH_MASK}::bigint)` : `CAST(${h} & CAST(${KH_MASK} AS UBIGINT) AS BIGINT)`;
}

/**
 * Each key column's canonical text, as select-list items (read back by `keyFromCanonical`);
 * numeric keeps its own text instead (`1.50` in a `numeric(10,2)`): PostgreSQL and a DuckDB
 * `DECIMAL(p,s)` print the same digits, and a copy of an unconstrained numeric holds
 * PostgreSQL's exact text, which the dual-writer compares as text when it deletes a key.
 */
export function keyPartsSql(d: Dialect, keys: readonly SideColumn[], duckTypes: Record<string, string> = {}, qualifier = ''): string[] {
  return keys.map((c) => {
    const x = `${qualifier}${quoteIdent(c.name)}`;
    if (categoryOf(c.pgType) === 'numeric') return d.name === 'postgres' ? `${x}::text` : `CAST(${x} AS VARCHAR)`;
    return d.norm(c, x, duckTypes[c.name]);
  });
}

const pad2 = (n: number | bigint) => String(n).padStart(2, '0');

/** Days since 1970-01-01 → proleptic Gregorian year/month/day (H. Hinnant's civil_from_days). */
function civil(days: number): { y: number; m: number; d: number } {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const m = mp < 10 ? mp + 3 : mp - 9;
  return { y: yoe + era * 400 + (m <= 2 ? 1 : 0), m, d: doy - Math.floor((153 * mp + 2) / 5) + 1 };
}

/** PostgreSQL's ISO text of a date (`0044-03-15 BC` before year 1: there is no year 0). */
function dateParts(days: number): { text: string; bc: boolean } {
  const { y, m, d } = civil(days);
  const bc = y <= 0;
  return { text: `${String(bc ? 1 - y : y).padStart(4, '0')}-${pad2(m)}-${pad2(d)}`, bc };
}

const US_PER_DAY = 86_400_000_000n;

/** PostgreSQL's ISO text of a timestamp (with time zone: in UTC, `+00`), fractional zeros trimmed as PostgreSQL does. */
function timestampText(us: bigint, withZone: boolean): string {
  let day = us / US_PER_DAY;
  if (us % US_PER_DAY < 0n) day -= 1n;
  const rem = us - day * US_PER_DAY;
  const secs = rem / 1_000_000n;
  const frac = rem % 1_000_000n;
  const { text, bc } = dateParts(Number(day));
  const f = frac === 0n ? '' : `.${frac.toString().padStart(6, '0').replace(/0+$/, '')}`;
  return `${text} ${pad2(secs / 3600n)}:${pad2((secs / 60n) % 60n)}:${pad2(secs % 60n)}${f}${withZone ? '+00' : ''}${bc ? ' BC' : ''}`;
}

/**
 * The PostgreSQL text of one key value from its canonical text (normalize.ts): text that
 * PostgreSQL parses back to the same value (what the dual-writer's recovery legs read) and
 * that the dual-writer's DuckDB casts turn into the copy's value. Timestamps are spelled in
 * UTC, `character(n)` is padded to n as PostgreSQL prints it (the copy stores the padding).
 */
export function keyFromCanonical(c: SideColumn, canonical: string): string {
  const t = c.pgType.trim().toLowerCase();
  switch (categoryOf(c.pgType)) {
    case 'timestamp':
      return /^-?\d+$/.test(canonical) ? timestampText(BigInt(canonical), / with time zone$/.test(t)) : canonical;
    case 'date': {
      if (!/^-?\d+$/.test(canonical)) return canonical; // infinity, -infinity
      const { text, bc } = dateParts(Number(canonical));
      return bc ? `${text} BC` : text;
    }
    case 'bytea':
      return `\\x${canonical}`;
    case 'bpchar': {
      const n = /\((\d+)\)$/.exec(t) ?? (t === 'character' ? ['', '1'] : undefined);
      const len = [...canonical].length;
      return n && len < Number(n[1]) ? canonical + ' '.repeat(Number(n[1]) - len) : canonical;
    }
    case 'text':
      return canonical.slice(canonical.indexOf(':') + 1); // `length:text`
    default:
      return canonical; // int, bool: the canonical text is PostgreSQL's; numeric: its own text (keyPartsSql)
  }
}

/** The key as rows report it: the one column's text, or a JSON array of the columns' texts. */
export function formatKey(keys: readonly SideColumn[], texts: readonly string[]): string {
  return keys.length === 1 ? texts[0]! : JSON.stringify(texts);
}

/** `formatKey` of a row read as canonical key parts. */
export function keyOfRow(keys: readonly SideColumn[], parts: ReadonlyArray<string | null>): string {
  return formatKey(
    keys,
    keys.map((c, i) => keyFromCanonical(c, parts[i] ?? '')),
  );
}

/**
 * A reported (or user-given) key back to the key columns' texts, in key order. A composite
 * key is a JSON array with one string (or integer) per key column; throws a `TypeError`
 * whose message is the reason when it is not.
 */
export function parseKey(keys: readonly SideColumn[], key: string): string[] {
  if (keys.length === 1) return [key];
  let parsed: unknown;
  try {
    parsed = JSON.parse(key);
  } catch {
    throw new TypeError(`expected a JSON array of ${keys.length} values (${keys.map((c) => c.name).join(', ')})`);
  }
  if (!Array.isArray(parsed) || parsed.length !== keys.length) throw new TypeError(`expected a JSON array of ${keys.length} values (${keys.map((c) => c.name).join(', ')})`);
  return parsed.map((v: unknown, i) => {
    if (typeof v === 'string') return v;
    if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
    throw new TypeError(`element ${i} (${keys[i]!.name}) must be a string${typeof v === 'number' ? ' (give numbers that are not safe integers as strings)' : ''}`);
  });
}

/**
 * Deterministic order of reported keys: an integer key by value (as before); otherwise key
 * column by key column, integers by value and everything else by its text (code units).
 */
export function sortKeys<T extends { key: string }>(columns: readonly SideColumn[], items: T[]): T[] {
  if (isIntegerKey(columns)) return items.sort((a, b) => (BigInt(a.key) < BigInt(b.key) ? -1 : 1));
  const keys = keyColumnsOf(columns);
  const ints = keys.map((c) => categoryOf(c.pgType) === 'int');
  const decorated = items.map((item) => {
    let parts: string[];
    try {
      parts = parseKey(keys, item.key);
    } catch {
      parts = [item.key];
    }
    return { item, parts: parts.map((p, i) => (ints[i] && /^-?\d+$/.test(p) ? BigInt(p) : p)) };
  });
  decorated.sort((a, b) => {
    for (let i = 0; i < Math.max(a.parts.length, b.parts.length); i++) {
      const x = a.parts[i];
      const y = b.parts[i];
      if (x === y) continue;
      if (x === undefined) return -1;
      if (y === undefined) return 1;
      if (typeof x === typeof y) return x < y ? -1 : 1;
      return typeof x === 'bigint' ? -1 : 1;
    }
    return 0;
  });
  return decorated.map((d) => d.item);
}

/**
 * Reported keys as the dual-writer's recovery legs take them: a single-column key as is,
 * a composite key as its columns' texts. Throws a `TypeError` for a malformed composite key.
 */
export function repairKeys(columns: readonly SideColumn[], keys: readonly string[]): Array<string | string[]> {
  const kc = keyColumnsOf(columns);
  return kc.length === 1 ? [...keys] : keys.map((k) => parseKey(kc, k));
}
