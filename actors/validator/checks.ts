import type pg from 'pg';
import { NotFoundError } from '../../runtime/index.js';
import type { CheckType, SideColumn } from '../../queues/validate.js';
import { CHECK_WEIGHTS } from '../../queues/consistency-reports.js';

export { CHECK_WEIGHTS, consistencyScore } from '../../queues/consistency-reports.js';
import { dataHash, type DiffKey, type Sides } from './bisect.js';
import type { BusinessRule, ValidatorConfig } from './config.js';
import { keyUnsupported } from './key-hash.js';

/** One verdict of a run: one per table and check type, or per rule / foreign key. */
export interface CheckResult {
  table: string;
  checkType: CheckType;
  checkName: string;
  status: 'passed' | 'failed' | 'error' | 'skipped';
  weight: number;
  sourceCount?: number | undefined;
  copyCount?: number | undefined;
  diffTotal: number;
  diffKeys: Array<DiffKey | { key: string; kind: string }>;
  details: Record<string, unknown>;
  durationMs: number;
}

export interface TableShape {
  columns: SideColumn[];
  foreignKeys: Array<{ name: string; columns: string[]; refTable: string; refColumns: string[] }>;
}

export async function readTableShape(pool: pg.Pool, table: string): Promise<TableShape> {
  const [schema, name] = table.split('.');
  const cols = await pool.query<{ name: string; pg_type: string; is_key: boolean }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS pg_type, coalesce(a.attnum = ANY(i.indkey), false) AS is_key
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
      WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [schema, name],
  );
  if (cols.rows.length === 0) throw new NotFoundError(`table ${table} does not exist in PostgreSQL`, { table });
  const fks = await pool.query<{ name: string; columns: string[]; ref_table: string; ref_columns: string[] }>(
    `SELECT con.conname AS name, rn.nspname || '.' || rc.relname AS ref_table,
            array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o) AS columns,
            array(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o) AS ref_columns
       FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace
      WHERE con.contype = 'f' AND n.nspname = $1 AND c.relname = $2 ORDER BY con.conname`,
    [schema, name],
  );
  return {
    columns: cols.rows.map((r) => ({ name: r.name, pgType: r.pg_type, isKey: r.is_key })),
    foreignKeys: fks.rows.map((r) => ({ name: r.name, columns: r.columns, refTable: r.ref_table, refColumns: r.ref_columns })),
  };
}

/**
 * Why the checks cannot run on this table, or undefined when they can: a single integer key
 * is segmented over its values, any other primary key over its hash (key-hash.ts).
 */
export function unsupportedKey(shape: TableShape): string | undefined {
  return keyUnsupported(shape.columns);
}

type Base = Pick<CheckResult, 'table' | 'checkType' | 'checkName' | 'weight'>;
const timed = async (base: Base, work: () => Promise<Omit<CheckResult, keyof Base | 'durationMs'>>): Promise<CheckResult> => {
  const started = Date.now();
  try {
    return { ...base, ...(await work()), durationMs: Date.now() - started };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return { ...base, status: 'error', diffTotal: 0, diffKeys: [], details: { error: message }, durationMs: Date.now() - started };
  }
};

function asNumber(v: string | null | undefined): number | undefined {
  if (v === null || v === undefined || v.trim() === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

/** The checks of one type on one table. */
export async function runCheck(type: CheckType, table: string, shape: TableShape, sides: Sides, config: ValidatorConfig): Promise<CheckResult[]> {
  const weight = CHECK_WEIGHTS[type];
  const base = { table, checkType: type, checkName: type, weight };
  const sideBase = { table, columns: shape.columns };
  const bad = unsupportedKey(shape);
  const skipped = (reason: string): CheckResult[] => [{ ...base, status: 'skipped', diffTotal: 0, diffKeys: [], details: { reason }, durationMs: 0 }];
  if (bad) return skipped(`table ${table} ${bad}`);
  switch (type) {
    case 'row_count':
      return [
        await timed(base, async () => {
          const [p, d] = await Promise.all([sides.pg({ ...sideBase, op: 'bounds' }), sides.duck({ ...sideBase, op: 'bounds' })]);
          const source = Number(p.bounds!.n);
          const copy = Number(d.bounds!.n);
          return { status: source === copy ? 'passed' : 'failed', sourceCount: source, copyCount: copy, diffTotal: Math.abs(source - copy), diffKeys: [], details: {} };
        }),
      ];
    case 'data_hash':
      return [
        await timed(base, async () => {
          const h = await dataHash(sides, table, shape.columns, { factor: config.bisectionFactor, threshold: config.downloadThreshold, recheckDelayMs: config.recheckDelaySeconds * 1000, maxRowsPerJob: config.maxRowsPerJob });
          const { diffs, sourceCount, copyCount, ...details } = h;
          return { status: diffs.length === 0 ? 'passed' : 'failed', sourceCount, copyCount, diffTotal: diffs.length, diffKeys: diffs, details };
        }),
      ];
    case 'business_rules': {
      const rules = config.rules[table] ?? [];
      if (rules.length === 0) return skipped(`no business rules configured for ${table} (VALIDATOR_BUSINESS_RULES)`);
      return Promise.all(rules.map((r) => timed({ ...base, checkName: r.name, weight: weight / rules.length }, () => businessRule(r, sides, sideBase))));
    }
    case 'referential_integrity': {
      if (shape.foreignKeys.length === 0) return skipped(`table ${table} has no foreign keys in PostgreSQL`);
      const share = weight / shape.foreignKeys.length;
      return Promise.all(
        shape.foreignKeys.map((fk) => {
          const b = { ...base, checkName: fk.name, weight: share };
          if (!config.tables.includes(fk.refTable)) return Promise.resolve({ ...b, status: 'skipped' as const, diffTotal: 0, diffKeys: [], details: { reason: `${fk.refTable} is not a checked (copied) table` }, durationMs: 0 });
          return timed(b, async () => {
            const d = await sides.duck({ ...sideBase, op: 'orphans', fk: { columns: fk.columns, refTable: fk.refTable, refColumns: fk.refColumns }, sample: config.diffKeysCap });
            const n = Number(d.violations);
            return { status: n === 0 ? 'passed' : 'failed', diffTotal: n, diffKeys: d.sample!.map((key) => ({ key, kind: 'orphan_in_copy' })), details: { foreignKey: fk } };
          });
        }),
      );
    }
  }
}

async function businessRule(rule: BusinessRule, sides: Sides, sideBase: { table: string; columns: SideColumn[] }): Promise<Omit<CheckResult, keyof Base | 'durationMs'>> {
  if (rule.predicate !== undefined) {
    const work = { ...sideBase, op: 'predicate' as const, sql: rule.predicate, sample: 100 };
    const [p, d] = await Promise.all([sides.pg(work), sides.duck(work)]);
    const source = Number(p.violations);
    const copy = Number(d.violations);
    const keys = [...p.sample!.map((key) => ({ key, kind: 'violation_in_source' })), ...d.sample!.map((key) => ({ key, kind: 'violation_in_copy' }))];
    return { status: source + copy === 0 ? 'passed' : 'failed', diffTotal: source + copy, diffKeys: keys, details: { predicate: rule.predicate, sourceViolations: source, copyViolations: copy } };
  }
  const work = { ...sideBase, op: 'aggregate' as const, sql: rule.aggregate! };
  const [p, d] = await Promise.all([sides.pg(work), sides.duck(work)]);
  const a = asNumber(p.value);
  const b = asNumber(d.value);
  const equal = a !== undefined && b !== undefined ? Math.abs(a - b) <= rule.tolerance : p.value === d.value;
  return { status: equal ? 'passed' : 'failed', diffTotal: equal ? 0 : 1, diffKeys: [], details: { aggregate: rule.aggregate, source: p.value, copy: d.value, tolerance: rule.tolerance } };
}
