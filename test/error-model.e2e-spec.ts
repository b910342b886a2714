import { randomUUID } from 'node:crypto';
import { ADMIN_TOKEN, startTestApp, type TestApp } from './support/app.js';

// SPEC §3 and §7: how bodies are read and how every refusal looks, on a route that takes a DTO.
const ROUTE = '/api/tenants';
const MIB = 1024 * 1024;

describe('request bodies and the error model', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  const post = (contentType: string | null, body?: string | Buffer) => {
    const request = t.http.post(ROUTE).set('authorization', `Bearer ${ADMIN_TOKEN}`);
    if (contentType !== null) void request.set('content-type', contentType);
    return body === undefined ? request : request.send(body);
  };

  /** Asserts the contract's error body and returns it for further checks. */
  const refusal = async (response: Promise<any>, statusCode: number, code: string) => {
    const { status, body, headers } = await response;
    expect({ status, code: body.code }, JSON.stringify(body)).toEqual({ status: statusCode, code });
    expect(body).toMatchObject({ statusCode, code, message: expect.any(String) });
    expect(headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.stringify(body)).not.toMatch(/\bat \w+ \(|node_modules/);
    return body;
  };

  it('accepts a JSON object (charset parameter included)', async () => {
    const response = await post('application/json; charset=utf-8', JSON.stringify({ name: 'Acme', slug: 'acme' }));
    expect(response.status).toBe(201);
    expect(response.body).toMatchObject({ name: 'Acme', slug: 'acme' });
  });

  it('answers 413 PAYLOAD_TOO_LARGE above 1 MiB and reads a body of exactly 1 MiB', async () => {
    const sized = (bytes: number) => {
      const skeleton = JSON.stringify({ name: '', slug: 'big' });
      return JSON.stringify({ name: 'x'.repeat(bytes - skeleton.length), slug: 'big' });
    };
    expect(Buffer.byteLength(sized(MIB))).toBe(MIB);
    const tooLarge = await refusal(post('application/json', sized(MIB + 1)), 413, 'PAYLOAD_TOO_LARGE');
    expect(tooLarge.message).toContain('1 MiB');
    // Read and validated (the name is too long), not refused for its size.
    await refusal(post('application/json', sized(MIB)), 400, 'VALIDATION_FAILED');
  });

  it('answers 413 for an oversized body of any content type', async () => {
    await refusal(post('text/plain', 'x'.repeat(MIB + 1)), 413, 'PAYLOAD_TOO_LARGE');
  });

  it.each([['{"name": "Acme",'], ['{name: "Acme"}'], ["{'name': 'Acme'}"], ['{"name": "Acme"} trailing']])(
    'answers 400 INVALID_JSON to the unparseable body %s',
    async (body) => {
      await refusal(post('application/json', body), 400, 'INVALID_JSON');
      await refusal(post('application/vnd.switchyard+json', body), 400, 'INVALID_JSON');
    },
  );

  it.each([
    ['an array', '[]'],
    ['an array of objects', '[{"name": "Acme", "slug": "acme"}]'],
    ['a string', '"x"'],
    ['a number', '42'],
    ['null', 'null'],
    ['true', 'true'],
    ['an empty body', ''],
    ['whitespace', '  \n'],
  ])('answers 400 VALIDATION_FAILED to %s as a JSON body', async (_case, body) => {
    const error = await refusal(post('application/json', body), 400, 'VALIDATION_FAILED');
    expect(error.errors).toEqual([{ field: 'body', message: expect.any(String) }]);
  });

  it.each([
    ['text/plain', '{"name": "Acme", "slug": "acme"}'],
    ['application/x-www-form-urlencoded', 'name=Acme&slug=acme'],
    ['multipart/form-data; boundary=x', '--x\r\ncontent-disposition: form-data; name="name"\r\n\r\nAcme\r\n--x--'],
    ['application/xml', '<tenant><name>Acme</name></tenant>'],
    ['application/octet-stream', Buffer.from('{"name":"Acme","slug":"acme"}')],
  ])('answers 400 VALIDATION_FAILED to a %s body', async (contentType, body) => {
    await refusal(post(contentType, body), 400, 'VALIDATION_FAILED');
  });

  it('answers 400 VALIDATION_FAILED to a request without body or content type', async () => {
    await refusal(post(null), 400, 'VALIDATION_FAILED');
  });

  it('rejects an unknown field, naming it', async () => {
    const body = { name: 'Acme', slug: 'acme-unknown', plan: 'gold' };
    const error = await refusal(post('application/json', JSON.stringify(body)), 400, 'VALIDATION_FAILED');
    expect(error.errors).toEqual([{ field: 'plan', message: expect.any(String) }]);
  });

  it.each(['id', 'createdAt'])('refuses to let the client set the server-assigned %s', async (field) => {
    const body = { name: 'Acme', slug: `acme-${field.toLowerCase()}`, [field]: randomUUID() };
    const error = await refusal(post('application/json', JSON.stringify(body)), 400, 'VALIDATION_FAILED');
    expect(error.errors).toContainEqual({ field, message: expect.any(String) });
  });

  it('lists every missing or ill-typed field', async () => {
    const error = await refusal(post('application/json', JSON.stringify({ name: 42 })), 400, 'VALIDATION_FAILED');
    const fields = (error.errors as Array<{ field: string }>).map((entry) => entry.field);
    expect(new Set(fields)).toEqual(new Set(['name', 'slug']));
  });

  it.each([
    ['__proto__', '{"name": "Acme", "slug": "acme-proto", "__proto__": {"polluted": true}}'],
    [
      'constructor.prototype',
      '{"name": "Acme", "slug": "acme-ctor", "constructor": {"prototype": {"polluted": true}}}',
    ],
  ])('refuses a %s key without polluting any prototype', async (_case, body) => {
    const response = await post('application/json', body);
    expect(response.status).toBe(400);
    expect(['INVALID_JSON', 'VALIDATION_FAILED']).toContain(response.body.code);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
