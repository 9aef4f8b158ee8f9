import type { SideColumn } from '../../queues/validate.js';

/**
 * One canonical text per value, computed in SQL on each side so PostgreSQL and DuckDB
 * produce the SAME string for the same logical value (then the same md5):
 *
 * | PostgreSQL type          | canonical text                                   |
 * |--------------------------|--------------------------------------------------|
 * | NULL (any type)          | `\N` (a non-NULL text is length-prefixed, so `''` is `0:`) |
 * | smallint/integer/bigint  | decimal                                          |
 * | numeric                  | decimal without trailing fractional zeros (`1.50` = `1.5`) |
 * | real / double precision  | `%.6g` / `%.15g` (PostgreSQL with extra_float_digits=0), NaN/Infinity spelled as PostgreSQL does |
 * | boolean                  | `t` / `f`                                        |
 * | timestamp[tz]            | microseconds since the epoch (time zone and display precision drop out) |
 * | date                     | days since 1970-01-01                            |
 * | bytea                    | lower-case hex                                   |
 * | character(n)             | without trailing blanks (PostgreSQL's own char semantics) |
 * | arrays                   | JSON text                                        |
 * | everything else          | `length:text` (exact bytes, no collation)        |
 *
 * Text is compared byte for byte: collation only matters for key ORDER, and segments
 * are integer key ranges, so no collation-dependent comparison is ever made.
 */
export type Category = 'int' | 'numeric' | 'float4' | 'float8' | 'bool' | 'timestamp' | 'date' | 'bytea' | 'bpchar' | 'array' | 'text';

export function categoryOf(pgType: string): Category {
  const t = pgType.trim().toLowerCase();
  if (t.endsWith('[]')) return 'array';
  if (t === 'smallint' || t === 'integer' || t === 'bigint') return 'int';
  if (/^numeric(\(|$)/.test(t)) return 'numeric';
  if (t === 'real') return 'float4';
  if (t === 'double precision') return 'float8';
  if (t === 'boolean') return 'bool';
  if (/^timestamp(\(\d+\))? with(out)? time zone$/.test(t)) return 'timestamp';
  if (t === 'date') return 'date';
  if (t === 'bytea') return 'bytea';
  if (/^character(\(\d+\))?$/.test(t) || t === 'bpchar') return 'bpchar';
  return 'text';
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export interface Dialect {
  name: 'postgres' | 'duckdb';
  /** Canonical text of column `c` (quoted reference `x`), NULL when the value is NULL. */
  norm(c: SideColumn, x: string, duckType?: string): string;
  /**
   * 64 bits of the md5 of a text expression, as an integer (the per-row checksum xor-ed per
   * segment): bytes 8..15 of the digest read little-endian, which is the upper half of
   * DuckDB's `md5_number` (a 128-bit integer, no hex text made). PostgreSQL gives it as a
   * signed BIGINT, DuckDB as an unsigned UBIGINT; read both as unsigned 64-bit.
   */
  textHash64(text: string): string;
  /** An integer key as BIGINT. */
  bigint(x: string): string;
  /** Integer division (DuckDB's `/` is a float division). */
  intDiv(a: string, b: string): string;
}

const trimZeros = (s: string) => `CASE WHEN contains(${s}, '.') THEN rtrim(rtrim(${s}, '0'), '.') ELSE ${s} END`;
const duckFloat = (x: string, digits: number) =>
  `CASE WHEN isnan(${x}) THEN 'NaN' WHEN isinf(${x}) THEN CASE WHEN ${x} > 0 THEN 'Infinity' ELSE '-Infinity' END ELSE printf('%.${digits}g', ${x}) END`;

/**
 * PostgreSQL's spelling. From PostgreSQL 18 on, `bytea` casts to `bigint`, which makes two
 * hot spots about 2x cheaper per row: a timestamp's microseconds come from its 8-byte binary
 * form (`timestamptz_send`, microseconds since 2000-01-01) instead of numeric arithmetic on
 * `extract(epoch ...)`, and the hash's 64 bits from `decode(md5, 'hex')` (then `reverse`, also
 * new in 18) instead of a bit-string. Older servers get the equivalent (slower) expressions: the canonical text is
 * the same on every version.
 */
export function postgresDialect(serverVersionNum = 180000): Dialect {
  const v18 = serverVersionNum >= 180000;
  const epochUs = (x: string, pgType: string) => {
    if (!v18) return `(extract(epoch FROM ${x}) * 1000000)::bigint`;
    const send = / with time zone$/.test(pgType.trim().toLowerCase()) ? 'timestamptz_send' : 'timestamp_send';
    return `(${send}(${x})::bigint + ${PG_EPOCH_US})`;
  };
  return {
    name: 'postgres',
    norm(c, x) {
      switch (categoryOf(c.pgType)) {
        case 'int':
        case 'float4':
        case 'float8': // extra_float_digits = 0 on the validator's sessions: %.6g / %.15g
        case 'bpchar': // char(n) → text drops the padding
          return `${x}::text`;
        case 'numeric':
          return `trim_scale(${x})::text`;
        case 'bool':
          return `CASE WHEN ${x} THEN 't' WHEN NOT ${x} THEN 'f' END`; // NULL stays NULL (then `\N`), never 'f'
        case 'timestamp':
          return `CASE WHEN isfinite(${x}) THEN ${epochUs(x, c.pgType)}::text ELSE ${x}::text END`;
        case 'date':
          return `CASE WHEN isfinite(${x}) THEN (${x} - DATE '1970-01-01')::text ELSE ${x}::text END`;
        case 'bytea':
          return `encode(${x}, 'hex')`;
        case 'array':
          return `array_to_json(${x})::text`;
        case 'text':
          return `length(${x}::text)::text || ':' || ${x}::text`;
      }
    },
    // reverse(bytea) is new in 18; older servers swap the hex pairs of the md5, computed once per row in a sub-select.
    textHash64: (t) =>
      v18
        ? `reverse(substr(decode(md5(${t}), 'hex'), 9, 8))::bigint`
        : `(SELECT ('x' || ${[31, 29, 27, 25, 23, 21, 19, 17].map((i) => `substr(m, ${i}, 2)`).join(' || ')})::bit(64)::bigint FROM (SELECT md5(${t}) AS m) h)`,
    bigint: (x) => `${x}::bigint`,
    intDiv: (a, b) => `(${a}) / (${b})`,
  };
}

/** 2000-01-01 (PostgreSQL's timestamp origin) in microseconds since 1970-01-01. */
const PG_EPOCH_US = '946684800000000';

/** The PostgreSQL dialect for the current server (18, the one Concord's harness runs). */
export const postgres: Dialect = postgresDialect();

export const duckdb: Dialect = {
  name: 'duckdb',
  norm(c, x, duckType = 'VARCHAR') {
    const asText = `CAST(${x} AS VARCHAR)`;
    const isText = duckType.toUpperCase() === 'VARCHAR';
    switch (categoryOf(c.pgType)) {
      case 'int':
        return asText;
      case 'numeric': {
        const decimal = /^DECIMAL\((\d+),\s*(\d+)\)$/i.exec(duckType.trim());
        if (!decimal) return trimZeros(asText); // VARCHAR: PostgreSQL's text of an unconstrained numeric
        const [p, scale] = [Number(decimal[1]), Number(decimal[2])];
        if (scale === 0) return asText;
        if (scale > 6) return `rtrim(rtrim(${asText}, '0'), '.')`;
        // The value at the fewest decimals that hold it exactly (integer arithmetic): about 3x
        // cheaper than trimming the text, which was half the DuckDB side's text cost.
        const fewer = Array.from({ length: scale }, (_, k) => `WHEN ${x} = round(${x}, ${k}) THEN CAST(CAST(${x} AS DECIMAL(${p},${k})) AS VARCHAR)`);
        return `CASE ${fewer.join(' ')} ELSE ${asText} END`;
      }
      case 'float4':
        return isText ? x : duckFloat(x, 6);
      case 'float8':
        return isText ? x : duckFloat(x, 15);
      case 'bpchar':
        return `rtrim(${asText}, ' ')`;
      case 'bool':
        return `CASE WHEN ${x} THEN 't' WHEN NOT ${x} THEN 'f' END`; // NULL stays NULL (then `\N`), never 'f'
      case 'timestamp':
        return isText ? x : `CASE WHEN isfinite(${x}) THEN CAST(epoch_us(${x}) AS VARCHAR) ELSE ${asText} END`;
      case 'date':
        return isText ? x : `CASE WHEN isfinite(${x}) THEN CAST(date_diff('day', DATE '1970-01-01', ${x}) AS VARCHAR) ELSE ${asText} END`;
      case 'bytea':
        return `lower(hex(${x}))`;
      case 'array':
        return `CAST(to_json(${x}) AS VARCHAR)`;
      case 'text':
        return `CAST(length(${asText}) AS VARCHAR) || ':' || ${asText}`;
    }
  },
  // About 40% cheaper per row than the hex route (md5 text, substr, '0x' || ..., cast).
  textHash64: (t) => `CAST(md5_number(${t}) >> 64 AS UBIGINT)`,
  bigint: (x) => `CAST(${x} AS BIGINT)`,
  intDiv: (a, b) => `(${a}) // (${b})`,
};

/**
 * The row's canonical text: every column's canonical text (or `\N`), joined by `|`. DuckDB
 * builds it with one `concat` (about 30% cheaper there than a chain of `||`); in PostgreSQL
 * the `||` chain is the cheaper one (`concat` looks each argument's output function up per row).
 */
export function rowText(d: Dialect, columns: readonly SideColumn[], duckTypes: Record<string, string> = {}): string {
  const parts = columns.map((c) => `coalesce(${d.norm(c, quoteIdent(c.name), duckTypes[c.name])}, '\\N')`);
  return d.name === 'duckdb' ? `concat(${parts.join(`, '|', `)})` : parts.join(` || '|' || `);
}

/** The row's checksum: 64 bits of the md5 of its canonical text (`Dialect.textHash64`). */
export function rowHash64(d: Dialect, columns: readonly SideColumn[], duckTypes: Record<string, string> = {}): string {
  return d.textHash64(rowText(d, columns, duckTypes));
}

/** md5 hex of the row's canonical text. */
export function rowMd5(d: Dialect, columns: readonly SideColumn[], duckTypes: Record<string, string> = {}): string {
  return `md5(${rowText(d, columns, duckTypes)})`;
}

/** The DuckDB table that mirrors a PostgreSQL `schema.table` (the dual-writer's naming: `public` → `main`). */
export function duckTable(pgTable: string): { schema: string; table: string; sql: string } {
  const [pgSchema, table] = pgTable.split('.') as [string, string];
  const schema = pgSchema === 'public' ? 'main' : pgSchema;
  return { schema, table, sql: `${quoteIdent(schema)}.${quoteIdent(table)}` };
}

export function pgTable(table: string): string {
  const [schema, name] = table.split('.') as [string, string];
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}
