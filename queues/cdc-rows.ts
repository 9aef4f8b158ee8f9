import type { CdcApplyBatch, CdcChange, CdcText } from './cdc.js';

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
/** Separates the records of a segment (below); escaped as `¤3` inside values. */
export const RECORD_SEP = '\u00a7';
const ESC = '\u00a4';
const NULL_FIELD = `${ESC}0`;
const NEEDS_ESCAPE = /[\u00a4\u00a6\u00a7]/;

function escapeValue(v: string): string {
  return NEEDS_ESCAPE.test(v) ? v.replaceAll(ESC, `${ESC}1`).replaceAll(FIELD_SEP, `${ESC}2`).replaceAll(RECORD_SEP, `${ESC}3`) : v;
}

/** Every `¤` of a packed field starts an escape, and `¤1` is undone last, so no pass can mistake another's output. */
function unescapeField(f: string): CdcText {
  if (f === NULL_FIELD) return null;
  return f.includes(ESC) ? f.replaceAll(`${ESC}2`, FIELD_SEP).replaceAll(`${ESC}3`, RECORD_SEP).replaceAll(`${ESC}1`, ESC) : f;
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
  return `(CASE WHEN ${f} = '${NULL_FIELD}' THEN NULL WHEN contains(${f}, '${ESC}') THEN replace(replace(replace(${f}, '${ESC}2', '${FIELD_SEP}'), '${ESC}3', '${RECORD_SEP}'), '${ESC}1', '${ESC}') ELSE ${f} END)`;
}

/** A change as older readers queued it: upserts and deletes carry a packed row (`row`, `keyRow`) instead of value arrays. */
export type CdcPackedChange =
  | { op: 'upsert'; table: string; lsn: string; row: string; unchanged?: number[] }
  | { op: 'delete'; table: string; lsn: string; keyRow: string }
  | { op: 'truncate'; tables: string[]; lsn: string };

/**
 * A segment: many changes as ONE string, what the reader queues. Records are separated by
 * `§` (U+00A7, escaped as `¤3` inside values):
 * - `¤L<lsn>`: the commit LSN of the changes that follow;
 * - `¤R<table>`: the table of the changes that follow;
 * - `<row>`: an upsert with every column sent (a packed row);
 * - `¤P<i>,<j>¦<row>`: an upsert whose columns i, j are unchanged TOAST values, not sent;
 * - `¤D<key row>`: a delete (the packed key values);
 * - `¤T<tables>`: a truncate (the table names packed as a row).
 * A directive is `¤` and a letter; a field starts with `¤` only before a digit (NULL, an
 * escape), so a row is never mistaken for one.
 *
 * Why: as JSON, a change object costs the writer a parse of four keys, a string-table lookup
 * of its LSN, and garbage collection of all of it while the batch waits; a segment is one
 * string to parse, split into rows only where the rows are used.
 */
export type CdcSegment = string;

/** What reading a segment reports, record by record. */
export interface SegmentVisitor {
  lsn(lsn: string): void;
  table(table: string): void;
  upsert(row: string, unchanged: number[] | undefined): void;
  delete(keyRow: string): void;
  truncate(tables: string[]): void;
}

const DIRECTIVE = 0xa4; // '¤'

/** Changes (value arrays or packed rows) as one segment. */
export function encodeSegment(changes: ReadonlyArray<CdcChange | CdcPackedChange>): CdcSegment {
  const out: string[] = [];
  let lsn: string | undefined;
  let table: string | undefined;
  for (const c of changes) {
    if (c.lsn !== lsn) out.push(`${ESC}L${(lsn = c.lsn)}`);
    if (c.op === 'truncate') {
      out.push(`${ESC}T${packRow(c.tables)}`);
      continue;
    }
    if (c.table !== table) out.push(`${ESC}R${escapeValue((table = c.table))}`);
    if (c.op === 'delete') out.push(`${ESC}D${'keyRow' in c ? c.keyRow : packRow(c.key)}`);
    else {
      const row = 'row' in c ? c.row : packRow(c.values);
      out.push(c.unchanged && c.unchanged.length > 0 ? `${ESC}P${c.unchanged.join(',')}${FIELD_SEP}${row}` : row);
    }
  }
  return out.join(RECORD_SEP);
}

/** Reads a segment record by record, in order. */
export function readSegment(segment: CdcSegment, v: SegmentVisitor): void {
  for (const rec of segment.split(RECORD_SEP)) {
    const kind = rec.charCodeAt(0) === DIRECTIVE ? rec.charCodeAt(1) : 0;
    if (kind < 0x41 /* not a letter: a row */) {
      v.upsert(rec, undefined);
      continue;
    }
    switch (rec[1]) {
      case 'L':
        v.lsn(rec.slice(2));
        break;
      case 'R':
        v.table(unescapeField(rec.slice(2)) ?? '');
        break;
      case 'D':
        v.delete(rec.slice(2));
        break;
      case 'T':
        v.truncate(unpackRow(rec.slice(2)).map((t) => t ?? ''));
        break;
      case 'P': {
        const at = rec.indexOf(FIELD_SEP);
        if (at < 0) throw new Error('segment: a partial upsert without its row');
        v.upsert(rec.slice(at + 1), rec.slice(2, at).split(',').map(Number));
        break;
      }
      default:
        throw new Error(`segment: unknown record ${rec.slice(0, 2)} (a newer reader?)`);
    }
  }
}

/** The LSN of a segment's first change (every segment starts with one). */
export function segmentFirstLsn(segment: CdcSegment): string {
  if (!segment.startsWith(`${ESC}L`)) throw new Error('segment does not start with an LSN');
  const end = segment.indexOf(RECORD_SEP);
  return end < 0 ? segment.slice(2) : segment.slice(2, end);
}

/** A segment as change objects with value arrays (tests, tools, the rare mixed paths). */
export function decodeSegment(segment: CdcSegment): CdcChange[] {
  const out: CdcChange[] = [];
  let lsn = '';
  let table = '';
  readSegment(segment, {
    lsn: (l) => (lsn = l),
    table: (t) => (table = t),
    upsert: (row, unchanged) => out.push(unchanged ? { op: 'upsert', table, lsn, values: unpackRow(row), unchanged } : { op: 'upsert', table, lsn, values: unpackRow(row) }),
    delete: (keyRow) => out.push({ op: 'delete', table, lsn, key: unpackRow(keyRow) }),
    truncate: (tables) => out.push({ op: 'truncate', tables, lsn }),
  });
  return out;
}

/** Packs changes one by one (the format of older readers; tests of mixed queues). */
export function packChange(c: CdcChange | CdcPackedChange): CdcPackedChange {
  if (c.op === 'upsert' && 'values' in c) {
    return c.unchanged && c.unchanged.length > 0
      ? { op: 'upsert', table: c.table, lsn: c.lsn, row: packRow(c.values), unchanged: c.unchanged }
      : { op: 'upsert', table: c.table, lsn: c.lsn, row: packRow(c.values) };
  }
  if (c.op === 'delete' && 'key' in c) return { op: 'delete', table: c.table, lsn: c.lsn, keyRow: packRow(c.key) };
  return c as CdcPackedChange;
}

/** A packed change with value arrays again. */
export function unpackChange(c: CdcChange | CdcPackedChange): CdcChange {
  if (c.op === 'upsert' && 'row' in c) {
    return c.unchanged ? { op: 'upsert', table: c.table, lsn: c.lsn, values: unpackRow(c.row), unchanged: c.unchanged } : { op: 'upsert', table: c.table, lsn: c.lsn, values: unpackRow(c.row) };
  }
  if (c.op === 'delete' && 'keyRow' in c) return { op: 'delete', table: c.table, lsn: c.lsn, key: unpackRow(c.keyRow) };
  return c as CdcChange;
}

/** The batch as the reader queues it: its changes as one segment, `size` counting them. */
export function packBatch(batch: CdcApplyBatch): CdcApplyBatch {
  const objects = batch.changes.filter((c): c is CdcChange | CdcPackedChange => typeof c !== 'string');
  if (objects.length < batch.changes.length) throw new Error('packBatch: the batch already holds segments');
  return { ...batch, changes: objects.length > 0 ? [encodeSegment(objects)] : [], size: objects.length };
}

/** A batch with change objects holding value arrays, as the reader builds it in memory. */
export type UnpackedBatch = Omit<CdcApplyBatch, 'changes' | 'size'> & { changes: CdcChange[] };

/** A queued batch, in whichever form, as change objects with value arrays (tests, tools). */
export function unpackBatch(batch: CdcApplyBatch): UnpackedBatch {
  const { size: _size, ...rest } = batch;
  return { ...rest, changes: batch.changes.flatMap((c) => (typeof c === 'string' ? decodeSegment(c) : [unpackChange(c)])) };
}
