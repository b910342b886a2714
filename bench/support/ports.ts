import { createServer } from 'node:net';

/**
 * A port nobody listens on right now (the service cannot report the one PORT=0 would pick). Apart
 * from processes.ts, which reads dist/'s package.json when loaded: the tests import this from source.
 */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as { port: number };
  await new Promise((done) => server.close(done));
  return port;
}
