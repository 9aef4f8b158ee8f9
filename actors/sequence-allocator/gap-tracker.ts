import type { SequencedKline } from '../../queues/index.js';

/** One page of `GET /api/v1/klines/missed`. */
export interface MissedPage {
  symbol: string;
  fromSeq: number;
  toSeq: number;
  count: number;
  data: SequencedKline[];
  hasMore: boolean;
  skipped?: Array<{ from: number; to: number }>;
  missing?: Array<{ from: number; to: number }>;
}

export interface GapInfo {
  symbol: string;
  /** The numbers that were not received: (after, before). */
  after: number;
  before: number;
  /** Klines recovered through the missed API. */
  recovered: number;
  /** Numbers the server reports as never stamped (not data). */
  skipped: Array<{ from: number; to: number }>;
  /** Numbers the server could not find (lost or deleted data). */
  missing: Array<{ from: number; to: number }>;
}

export interface GapTrackerOptions {
  /** Receives every kline once, per symbol in sequence order: recovered ones before the newer message. */
  onKline(kline: SequencedKline, recovered: boolean): void | Promise<void>;
  /** Base URL of the Concord API, e.g. http://127.0.0.1:8080 (used unless `fetchPage` is given). */
  baseUrl?: string;
  /** Bearer token for the API. */
  token?: string;
  /** Fetches one page of missed klines; defaults to the HTTP API at `baseUrl`. */
  fetchPage?(symbol: string, fromSeq: number, toSeq: number, limit: number): Promise<MissedPage>;
  /** Rows per missed-API page. @defaultValue 1000 */
  pageSize?: number;
  /** Told about each gap once it is handled. */
  onGap?(gap: GapInfo): void;
}

/**
 * Client-side gap detection for per-symbol sequences. Feed it every pub/sub message;
 * it remembers the last sequence per symbol, and when a message skips ahead (seq > last + 1)
 * it fetches the klines in between from the missed API, page by page, and hands them over
 * in order before the newer message. Older or repeated messages are dropped. Messages of a
 * symbol are handled one at a time (a message arriving during a recovery waits for it).
 * If the API fails, `handle` rejects and the symbol's position stays where it was, so the
 * next message recovers everything since (the failed message included: it is stored).
 */
export class GapTracker {
  private readonly lastSeq = new Map<string, number>();
  private readonly chains = new Map<string, Promise<void>>();
  private readonly pageSize: number;
  private readonly fetchPage: (symbol: string, fromSeq: number, toSeq: number, limit: number) => Promise<MissedPage>;

  constructor(private readonly opts: GapTrackerOptions) {
    this.pageSize = opts.pageSize ?? 1000;
    if (!Number.isInteger(this.pageSize) || this.pageSize < 1 || this.pageSize > 1000) throw new RangeError(`pageSize must be an integer from 1 to 1000, got ${this.pageSize}`);
    if (opts.fetchPage) this.fetchPage = opts.fetchPage;
    else if (opts.baseUrl) this.fetchPage = (s, f, t, l) => this.fetchHttp(opts.baseUrl!, s, f, t, l);
    else throw new RangeError('GapTracker needs baseUrl or fetchPage');
  }

  /** The last sequence delivered for a symbol. */
  last(symbol: string): number | undefined {
    return this.lastSeq.get(symbol);
  }

  /** Starts a symbol at a known position (e.g. from `GET /api/v1/sequences/:symbol`), so the first message can reveal a gap. */
  seed(symbol: string, lastSeq: number): void {
    this.lastSeq.set(symbol, lastSeq);
  }

  /** Handles one pub/sub message (the parsed object or its JSON text). */
  handle(message: SequencedKline | string): Promise<void> {
    const msg: SequencedKline = typeof message === 'string' ? (JSON.parse(message) as SequencedKline) : message;
    const prev = this.chains.get(msg.symbol) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(() => this.process(msg));
    this.chains.set(msg.symbol, next);
    void next.finally(() => {
      if (this.chains.get(msg.symbol) === next) this.chains.delete(msg.symbol);
    }).catch(() => undefined);
    return next;
  }

  private async process(msg: SequencedKline): Promise<void> {
    const last = this.lastSeq.get(msg.symbol);
    if (last !== undefined && msg.seq <= last) return;
    if (last !== undefined && msg.seq > last + 1) await this.recover(msg.symbol, last, msg.seq);
    await this.opts.onKline(msg, false);
    this.lastSeq.set(msg.symbol, msg.seq);
  }

  private async recover(symbol: string, after: number, before: number): Promise<void> {
    let from = after;
    let recovered = 0;
    const skipped: GapInfo['skipped'] = [];
    const missing: GapInfo['missing'] = [];
    for (;;) {
      const page = await this.fetchPage(symbol, from, before - 1, this.pageSize);
      for (const k of page.data) {
        if (k.seq <= from || k.seq >= before) continue;
        await this.opts.onKline(k, true);
        this.lastSeq.set(symbol, k.seq);
        from = k.seq;
        recovered++;
      }
      skipped.push(...(page.skipped ?? []));
      missing.push(...(page.missing ?? []));
      if (!page.hasMore || page.data.length === 0) break;
      from = page.data[page.data.length - 1]!.seq;
    }
    this.opts.onGap?.({ symbol, after, before, recovered, skipped, missing });
  }

  private async fetchHttp(baseUrl: string, symbol: string, fromSeq: number, toSeq: number, limit: number): Promise<MissedPage> {
    const url = new URL('/api/v1/klines/missed', baseUrl);
    url.search = new URLSearchParams({ symbol, fromSeq: String(fromSeq), toSeq: String(toSeq), limit: String(limit) }).toString();
    const res = await fetch(url, { headers: this.opts.token ? { authorization: `Bearer ${this.opts.token}` } : {} });
    if (!res.ok) throw new Error(`missed API answered ${res.status}: ${(await res.text()).slice(0, 500)}`);
    return (await res.json()) as MissedPage;
  }
}
