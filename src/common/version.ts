import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The service's version from package.json, found by walking up (works from src/ and dist/src/). */
function readVersion(): string {
  let directory = import.meta.dirname;
  for (let depth = 0; depth < 5; depth++) {
    const candidate = join(directory, 'package.json');
    if (existsSync(candidate)) {
      const manifest = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string; version?: string };
      if (manifest.name === 'switchyard' && manifest.version) return manifest.version;
    }
    directory = dirname(directory);
  }
  return '0.0.0';
}

export const VERSION = readVersion();
export const USER_AGENT = `Switchyard/${VERSION}`;
