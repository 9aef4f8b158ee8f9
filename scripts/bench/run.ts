/**
 * `npm run bench -- <name>` runs scripts/bench/<name>.ts. Each benchmark prints a
 * table and, as its last line, one JSON object with its figures.
 */
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const name = process.argv[2];
const dir = fileURLToPath(new URL('.', import.meta.url));
const available = readdirSync(dir).filter((f) => f.endsWith('.ts') && !['run.ts', 'support.ts'].includes(f)).map((f) => f.slice(0, -3));
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench -- <name>   (available: ${available.join(', ')})`);
  process.exit(2);
}
await import(`./${name}.ts`);
