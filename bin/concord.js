#!/usr/bin/env node
// Loads the TypeScript CLI through tsx in this same process, so signals reach it
// directly (SIGTERM drains) in development, in the container and under npx.
import { register } from 'tsx/esm/api';

register();
await import('../cli/main.ts');
