import type { CdcApplyBatch, CdcChange, CdcText, CdcWireChange } from './cdc.js';

/**
 * Packed rows: the values of one row change as ONE string on the `cdc.apply` wire, fields
 * joined by `¦` (U+00A6). A value that contains `¦` or `¤` (U+00A4) has them escaped as
 * `¤2` and `¤1`; SQL NULL is the field `¤0`.
 *
 * Why: parsed as JSON arrays, a batch of 1,000 changes became some 6,000 small strings,
 * each looked up in V8's string table, then promoted and collected: in the CDC bench that
 * heap work was over half of the DuckDB writer's CPU. One string per row is parsed as a
 * block, and the writer hands it to DuckDB whole (one staging column), where SQL splits it
 * (`rowFieldSql`). Both separators are Latin-1, so strings stay one byte per character in
 * V8, and printable, so JSON does not escape them.
 */
export const FIELD_SEP = '\u00a6';
const ESC = '\u00a4';
const NULL_FIELD = `${ESC}0`;
const NEEDS_ESCAPE = /[\u00a4\u00a6]/;

function escapeValue(v: string): string {
  return NEEDS_ESCAPE.test(v) ? v.replaceAll(ESC, `${ESC}1`).replaceAll(FIELD_SEP, `${ESC}2`) : v;
}

/** Left to right: every `¤` of a packed field starts an escape, so the two passes cannot mistake one. */
function unescapeField(f: string): CdcText {
  if (f === NULL_FIELD) return null;
  return f.includes(ESC) ? f.replaceAll(`${ESC}2`, FIELD_SEP).replaceAll(`${ESC}1`, ESC) : f;
}

export function packRow(values: readonly CdcText[]): string {
  let s = '';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    s += (i === 0 ? '' : FIELD_SEP) + (v === null || v === undefined ? NULL_FIELD : escapeValue(v));
  }
  return s;
}

export function unpackRow(row: string): CdcText[] {
  return row.split(FIELD_SEP).map(unescapeField);
}

/**
 * The packed fields at `idx` (ascending or not), joined as they are packed: a stable string
 * key of a row by its key columns, without unpacking the row.
 */
export function packedFields(row: string, idx: readonly number[]): string {
  if (idx.length === 1) {
    const want = idx[0]!;
    let start = 0;
    for (let i = 0; i < want; i++) {
      start = row.indexOf(FIELD_SEP, start) + 1;
      if (start === 0) throw new Error(`packed row has no field ${want}`);
    }
    const end = row.indexOf(FIELD_SEP, start);
    return end < 0 ? row.slice(start) : row.slice(start, end);
  }
  const fields = row.split(FIELD_SEP);
  return idx.map((i) => fields[i]).join(FIELD_SEP);
}

/** Number of fields of a packed row. */
export function packedWidth(row: string): number {
  let n = 1;
  for (let at = row.indexOf(FIELD_SEP); at >= 0; at = row.indexOf(FIELD_SEP, at + 1)) n++;
  return n;
}

/** DuckDB SQL for field `i` (0-based) of the list `parts` = string_split(row, '¦'): NULL and escapes undone. */
export function rowFieldSql(parts: string, i: number): string {
  const f = `${parts}[${i + 1}]`;
  return `(CASE WHEN ${f} = '${NULL_FIELD}' THEN NULL WHEN contains(${f}, '${ESC}') THEN replace(replace(${f}, '${ESC}2', '${FIELD_SEP}'), '${ESC}1', '${ESC}') ELSE ${f} END)`;
}

/** A change as it travels: upserts and deletes carry a packed row (`row`, `keyRow`) instead of value arrays. */
export type CdcPackedChange =
  | { op: 'upsert'; table: string; lsn: string; row: string; unchanged?: number[] }
  | { op: 'delete'; table: string; lsn: string; keyRow: string }
  | { op: 'truncate'; tables: string[]; lsn: string };

export function packChange(c: CdcWireChange): CdcPackedChange {
  if (c.op === 'upsert' && 'values' in c) {
    return c.unchanged && c.unchanged.length > 0
      ? { op: 'upsert', table: c.table, lsn: c.lsn, row: packRow(c.values), unchanged: c.unchanged }
      : { op: 'upsert', table: c.table, lsn: c.lsn, row: packRow(c.values) };
  }
  if (c.op === 'delete' && 'key' in c) return { op: 'delete', table: c.table, lsn: c.lsn, keyRow: packRow(c.key) };
  return c as CdcPackedChange;
}

/** Either form to value arrays (older readers send arrays; tests and rare paths read values). */
export function unpackChange(c: CdcWireChange): CdcChange {
  if (c.op === 'upsert' && 'row' in c) {
    return c.unchanged ? { op: 'upsert', table: c.table, lsn: c.lsn, values: unpackRow(c.row), unchanged: c.unchanged } : { op: 'upsert', table: c.table, lsn: c.lsn, values: unpackRow(c.row) };
  }
  if (c.op === 'delete' && 'keyRow' in c) return { op: 'delete', table: c.table, lsn: c.lsn, key: unpackRow(c.keyRow) };
  return c as CdcChange;
}

/** The batch as the reader queues it: every change packed. */
export function packBatch(batch: CdcApplyBatch): CdcApplyBatch {
  return { ...batch, changes: batch.changes.map(packChange) };
}

/** A queued batch with value arrays again (tests, tools). */
export function unpackBatch(batch: CdcApplyBatch): CdcApplyBatch & { changes: CdcChange[] } {
  return { ...batch, changes: batch.changes.map(unpackChange) };
}
