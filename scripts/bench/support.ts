/** Shared pieces of the benchmarks: scale, timing, the closing table and JSON line. */
export const SCALE = (() => {
  const raw = process.env.BENCH_SCALE ?? '1';
  const n = Number(raw);
  if (!(n > 0 && n <= 10)) {
    console.error(`BENCH_SCALE=${raw}: expected a number in (0, 10]`);
    process.exit(2);
  }
  return n;
})();

export const scaled = (n: number, min = 1) => Math.max(min, Math.round(n * SCALE));

export async function timed<T>(work: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const started = process.hrtime.bigint();
  const value = await work();
  return { seconds: Number(process.hrtime.bigint() - started) / 1e9, value };
}

export function printTable(rows: Array<Record<string, string | number>>): void {
  const cols = Object.keys(rows[0] ?? {});
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(line(cols));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const r of rows) console.log(line(cols.map((c) => String(r[c]))));
}

export const round = (n: number, digits = 0) => Number(n.toFixed(digits));
