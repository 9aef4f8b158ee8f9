/**
 * LSNs as plain numbers inside the reader: a 64-bit WAL position fits a double
 * exactly below 2^53 (8 PiB of WAL), and number compares cost nothing on the hot
 * path. They become `X/Y` strings only where they leave the reader.
 */
const TWO_32 = 4294967296;

export function lsnToString(lsn: number): string {
  const hi = Math.floor(lsn / TWO_32);
  const lo = lsn - hi * TWO_32;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}

export function parseLsn(text: string): number {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!m) throw new RangeError(`not an LSN: ${JSON.stringify(text)} (expected X/Y in hex)`);
  return parseInt(m[1]!, 16) * TWO_32 + parseInt(m[2]!, 16);
}

/** Reads a big-endian 64-bit LSN at `at`. */
export function readLsn(buf: Buffer, at: number): number {
  return buf.readUInt32BE(at) * TWO_32 + buf.readUInt32BE(at + 4);
}

export function writeLsn(buf: Buffer, at: number, lsn: number): void {
  const hi = Math.floor(lsn / TWO_32);
  buf.writeUInt32BE(hi, at);
  buf.writeUInt32BE(lsn - hi * TWO_32, at + 4);
}

/** Microseconds since 2000-01-01 (PostgreSQL's epoch) at `at`, as Unix milliseconds. */
export function readPgTimeMs(buf: Buffer, at: number): number {
  const micros = buf.readUInt32BE(at) * TWO_32 + buf.readUInt32BE(at + 4);
  return micros / 1000 + PG_EPOCH_MS;
}

export const PG_EPOCH_MS = 946_684_800_000;
