import type { CdcColumn } from '../../queues/cdc.js';

/**
 * PostgreSQL → DuckDB type mapping. Values arrive as PostgreSQL's text output
 * (pgoutput, or `pg` with text parsers): they are appended to VARCHAR staging
 * columns untouched and converted by DuckDB in SQL (`castSql`), which measured
 * about 4x faster than parsing them into typed values in JavaScript
 * (scripts/bench/dual-writer.ts). Only arrays get a cheap JS step (the `{..}`
 * literal becomes a JSON array of strings, see `pgArrayToJson`).
 *
 * Choices:
 * - numeric(p,s) with p <= 38 and 0 <= s <= p → DECIMAL(p,s). Wider or unconstrained
 *   numeric → VARCHAR holding PostgreSQL's exact text: DOUBLE would lose digits silently.
 *   (NaN in a constrained numeric cannot be a DECIMAL: the batch fails loudly.)
 * - Types without a faithful DuckDB twin (interval, timetz, money, inet, enums, domains,
 *   ranges, ...) → VARCHAR with the exact PostgreSQL text.
 * - char(n) keeps PostgreSQL's padding (VARCHAR); timestamp(p) → TIMESTAMP (µs, as PostgreSQL).
 */
export interface ColumnMapping {
  /** DuckDB column type for the copy table. */
  duckType: string;
  /** SQL turning the VARCHAR staging expression `src` into `duckType`. */
  castSql(src: string): string;
  /** JS step applied to the text before staging, or undefined when the text goes as is. */
  prepare: ((text: string) => string) | undefined;
}

interface Scalar {
  duckType: string;
  /** How one text value becomes the type; `x` is a VARCHAR expression. */
  cast: (x: string) => string;
}

const plain = (duckType: string): Scalar => ({ duckType, cast: (x) => `CAST(${x} AS ${duckType})` });
/**
 * PostgreSQL writes years before 1 AD with a suffix, `0044-03-15[ 12:00:00+00] BC`; DuckDB
 * reads such a date as AD 44 (silently) and refuses such a timestamp. Both read the
 * astronomical year (44 BC = -0043, 1 BC = 0000), so the year is rewritten first.
 */
const beforeAd = (x: string) => {
  const year = `CAST(split_part(${x}, '-', 1) AS INTEGER)`;
  return `CASE WHEN ends_with(${x}, ' BC') THEN concat(CASE WHEN ${year} = 1 THEN '0000' ELSE '-' || lpad(CAST(${year} - 1 AS VARCHAR), 4, '0') END, substr(${x}, strpos(${x}, '-'), length(${x}) - strpos(${x}, '-') - 2)) ELSE ${x} END`;
};
const dated = (duckType: string): Scalar => ({ duckType, cast: (x) => `CAST(${beforeAd(x)} AS ${duckType})` });
const VARCHAR: Scalar = { duckType: 'VARCHAR', cast: (x) => x };
// pgoutput and `pg` both give bytea as `\x` + hex (bytea_output = hex, PostgreSQL's default).
const BLOB: Scalar = { duckType: 'BLOB', cast: (x) => `from_hex(substr(${x}, 3))` };

const SCALARS: Record<string, Scalar> = {
  smallint: plain('SMALLINT'),
  integer: plain('INTEGER'),
  bigint: plain('BIGINT'),
  real: plain('FLOAT'),
  'double precision': plain('DOUBLE'),
  boolean: plain('BOOLEAN'),
  uuid: plain('UUID'),
  date: dated('DATE'),
  'timestamp without time zone': dated('TIMESTAMP'),
  'timestamp with time zone': dated('TIMESTAMPTZ'),
  'time without time zone': plain('TIME'),
  json: plain('JSON'),
  jsonb: plain('JSON'),
  bytea: BLOB,
  text: VARCHAR,
};

/** `timestamp(3) with time zone` → `timestamp with time zone`; `character varying(20)` → text. */
function scalarFor(pgType: string): Scalar {
  const t = pgType.trim().toLowerCase();
  const exact = SCALARS[t];
  if (exact) return exact;
  const numeric = /^numeric(?:\((\d+)(?:,\s*(-?\d+))?\))?$/.exec(t);
  if (numeric) {
    if (numeric[1] === undefined) return VARCHAR;
    const p = Number(numeric[1]);
    const s = Number(numeric[2] ?? 0);
    return p <= 38 && s >= 0 && s <= p ? plain(`DECIMAL(${p},${s})`) : VARCHAR;
  }
  const precision = /^(timestamp|time)\(\d+\)( with(?:out)? time zone)$/.exec(t);
  if (precision) return scalarFor(`${precision[1]}${precision[2]}`);
  return VARCHAR; // character varying(n), character(n), interval, enums, domains, ...
}

/** The mapping of one PostgreSQL column (`format_type()` spelling). */
export function mapColumn(column: Pick<CdcColumn, 'pgType'>): ColumnMapping {
  const t = column.pgType.trim();
  if (t.endsWith('[]')) {
    const element = scalarFor(t.slice(0, -2).replace(/\[\]$/, ''));
    const duckType = `${element.duckType}[]`;
    // JSON text → VARCHAR[] → element type, element by element.
    const castSql =
      element === VARCHAR
        ? (src: string) => `CAST(CAST(${src} AS JSON) AS VARCHAR[])`
        : (src: string) => `list_transform(CAST(CAST(${src} AS JSON) AS VARCHAR[]), e -> ${element.cast('e')})`;
    return { duckType, castSql, prepare: pgArrayToJson };
  }
  const scalar = scalarFor(t);
  return { duckType: scalar.duckType, castSql: scalar.cast, prepare: undefined };
}

/**
 * A one-dimensional PostgreSQL array literal (`{1,NULL,"a,b","q\"x"}`, optionally
 * with `[lo:hi]=` bounds) as a JSON array of strings and nulls. An unquoted NULL is
 * SQL NULL; a quoted "NULL" is the text. Multi-dimensional arrays are refused: they
 * are not arrays of scalars, and flattening them would change the data.
 */
export function pgArrayToJson(literal: string): string {
  let s = literal;
  if (s.startsWith('[')) {
    const eq = s.indexOf('=');
    if (eq < 0) throw new TypeError(`not a PostgreSQL array literal: ${JSON.stringify(literal.slice(0, 80))}`);
    s = s.slice(eq + 1);
  }
  if (s[0] !== '{' || s[s.length - 1] !== '}') throw new TypeError(`not a PostgreSQL array literal: ${JSON.stringify(literal.slice(0, 80))}`);
  const out: Array<string | null> = [];
  const end = s.length - 1;
  let i = 1;
  const skipSpace = () => {
    while (i < end && (s[i] === ' ' || s[i] === '\t' || s[i] === '\n' || s[i] === '\r')) i++;
  };
  skipSpace();
  if (i === end) return '[]';
  for (;;) {
    skipSpace();
    if (s[i] === '{') throw new TypeError('multi-dimensional arrays are not supported (arrays of scalars only)');
    if (s[i] === '"') {
      let v = '';
      i++;
      while (i < end && s[i] !== '"') {
        if (s[i] === '\\') i++;
        v += s[i];
        i++;
      }
      if (s[i] !== '"') throw new TypeError(`unterminated quoted element in array literal ${JSON.stringify(literal.slice(0, 80))}`);
      i++;
      out.push(v);
    } else {
      let v = '';
      let escaped = false;
      while (i < end && s[i] !== ',') {
        if (s[i] === '\\') {
          i++;
          escaped = true;
        }
        v += s[i];
        i++;
      }
      v = v.trim();
      out.push(!escaped && v.toUpperCase() === 'NULL' ? null : v);
    }
    skipSpace();
    if (i >= end) break;
    if (s[i] !== ',') throw new TypeError(`unexpected ${JSON.stringify(s[i])} in array literal ${JSON.stringify(literal.slice(0, 80))}`);
    i++;
  }
  return JSON.stringify(out);
}

/** A SQL identifier, quoted. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * The DuckDB table that mirrors a PostgreSQL `schema.table`: `public` maps to DuckDB's
 * default schema `main` (so `SELECT * FROM users` works in both), other schemas keep their name.
 */
export function copyTable(pgTable: string): { schema: string; table: string; sql: string } {
  const dot = pgTable.indexOf('.');
  const pgSchema = dot < 0 ? 'public' : pgTable.slice(0, dot);
  const table = dot < 0 ? pgTable : pgTable.slice(dot + 1);
  const schema = pgSchema === 'public' ? 'main' : pgSchema;
  return { schema, table, sql: `${quoteIdent(schema)}.${quoteIdent(table)}` };
}
