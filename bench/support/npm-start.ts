import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The node flags of `npm start` (package.json's start script in `root`), so that the bench and the
 * tests run the built service exactly as it is started in production.
 */
export function npmStartNodeFlags(root: string): string[] {
  const { scripts } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: { start: string } };
  return scripts.start.split(/\s+/).filter((arg) => arg.startsWith('--'));
}
