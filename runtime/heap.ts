import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | undefined;

/** V8's collector, exposed once at run time (the same function `--expose-gc` gives). */
function collector(): () => void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  return gc;
}

/**
 * A full garbage collection when the V8 heap holds more than `softLimitBytes` (live data
 * and garbage together). For processes that handle big short-lived batches one after the
 * other (the DuckDB writer joins up to 50,000 CDC changes per transaction): each batch's
 * objects outlive the young generation while DuckDB works, are promoted, and V8 lets old
 * space grow to several times the live data before it collects. Collecting between
 * batches, where almost everything is garbage, keeps the resident size near the live
 * size for the cost of one pause per batch above the limit. Returns whether it collected.
 */
export function collectGarbageAbove(softLimitBytes: number): boolean {
  if (softLimitBytes <= 0 || getHeapStatistics().used_heap_size <= softLimitBytes) return false;
  collector()();
  return true;
}
