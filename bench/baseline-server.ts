import Fastify from 'fastify';

/**
 * The floor every HTTP scenario is compared against: bare Fastify (what the service runs on) in
 * its own process, answering BASELINE_BODY as JSON on BASELINE_PATH, serialised per request
 * like the service does, with no auth, no database and no Nest.
 */
const path = process.env.BASELINE_PATH ?? '/';
const body: unknown = JSON.parse(process.env.BASELINE_BODY ?? '{}');
const server = Fastify({ logger: false });
server.get(path, async () => body);
await server.listen({ port: Number(process.env.PORT ?? 0), host: process.env.HOST ?? '127.0.0.1' });
process.once('SIGTERM', () => void server.close().then(() => process.exit(0)));
