import { startTestApp, type TestApp } from './support/app.js';
import { adminAuth, bearer, createMachineUser, uniqueSlug } from './support/fixtures.js';

const TOKEN_PATTERN = /^sy_[0-9A-Za-z]{40,}$/;

/** The seed's mutation, literally (tenant id and username filled in). */
function seedMutation(tenantId: string, username: string, hashedKey = '__GENERATE_TOKEN__') {
  return `mutation {
    createMachineUserWithCredentials(
      tenantId: "${tenantId}"
      input: { name: "Payment Processing Service", username: "${username}", hashedKey: "${hashedKey}", enabled: true }
    ) {
      generatedToken
      machineUser { id username }
    }
  }`;
}

const CREATE_WITH_VARIABLES = `mutation Create($tenantId: ID!, $input: MachineUserCredentialsInput!) {
  createMachineUserWithCredentials(tenantId: $tenantId, input: $input) {
    generatedToken tokenId
    machineUser { id tenantId name username enabled roles createdAt }
  }
}`;

describe('POST /graphql (admin)', () => {
  let t: TestApp;
  let tenantId: string;

  beforeAll(async () => {
    t = await startTestApp();
    const slug = uniqueSlug('gql');
    tenantId = (await t.http.post('/api/tenants').set(adminAuth).send({ name: 'GraphQL', slug }).expect(201)).body.id;
  });
  afterAll(() => t.close());

  const graphql = (body: object) => t.http.post('/graphql').set(adminAuth).send(body);
  const input = (overrides: Record<string, unknown> = {}) => ({
    name: 'Payment Processing Service',
    username: uniqueSlug('svc'),
    hashedKey: '__GENERATE_TOKEN__',
    ...overrides,
  });

  describe("the seed's mutation", () => {
    it('creates the machine user, generates a token and answers exactly the selection', async () => {
      const username = uniqueSlug('payment');
      const response = await graphql({ query: seedMutation(tenantId, username) }).expect(200);
      expect(response.headers['content-type']).toMatch(/^application\/json/);
      expect(response.body).toEqual({
        data: {
          createMachineUserWithCredentials: {
            generatedToken: expect.stringMatching(TOKEN_PATTERN),
            machineUser: { id: expect.any(String), username },
          },
        },
      });
      const { generatedToken, machineUser } = response.body.data.createMachineUserWithCredentials;
      const stored = await t.http.get(`/api/machine-users/${machineUser.id}`).set(adminAuth).expect(200);
      expect(stored.body).toMatchObject({ tenantId, username, enabled: true, roles: ['backend'] });
      const tokens = await t.http.get(`/api/machine-users/${machineUser.id}/tokens`).set(adminAuth).expect(200);
      expect(tokens.body.items).toEqual([expect.objectContaining({ prefix: generatedToken.slice(0, 10) })]);
    });

    it('works with variables and an operationName, returning every field asked for', async () => {
      const fields = input({ enabled: false });
      const response = await graphql({
        query: CREATE_WITH_VARIABLES,
        variables: { tenantId, input: fields },
        operationName: 'Create',
      }).expect(200);
      const created = response.body.data.createMachineUserWithCredentials;
      expect(created).toEqual({
        generatedToken: expect.stringMatching(TOKEN_PATTERN),
        tokenId: expect.stringMatching(/^[0-9a-f-]{36}$/),
        machineUser: {
          id: expect.stringMatching(/^[0-9a-f-]{36}$/),
          tenantId,
          name: fields.name,
          username: fields.username,
          enabled: false,
          roles: ['backend'],
          createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        },
      });
      expect(response.body).not.toHaveProperty('errors');
    });

    it('honours a selection of only generatedToken', async () => {
      const response = await graphql({
        query: `mutation($t: ID!, $i: MachineUserCredentialsInput!) {
          createMachineUserWithCredentials(tenantId: $t, input: $i) { generatedToken }
        }`,
        variables: { t: tenantId, i: input() },
      }).expect(200);
      expect(Object.keys(response.body.data.createMachineUserWithCredentials)).toEqual(['generatedToken']);
    });

    it('answers the one query, and null for an unknown or malformed id', async () => {
      const user = await createMachineUser(t, tenantId, ['operator']);
      const query = 'query($id: ID!) { machineUser(id: $id) { id username roles } }';
      const found = await graphql({ query, variables: { id: user.machineUser.id } }).expect(200);
      expect(found.body.data.machineUser).toEqual({
        id: user.machineUser.id,
        username: user.machineUser.username,
        roles: ['operator'],
      });
      const unknown = await graphql({ query, variables: { id: '00000000-0000-4000-8000-000000000000' } }).expect(200);
      expect(unknown.body).toEqual({ data: { machineUser: null } });
      await graphql({ query, variables: { id: 'nope' } }).expect(200, { data: { machineUser: null } });
    });
  });

  describe('execution errors: 200 with data null and a code in extensions', () => {
    const create = (variables: object) => graphql({ query: CREATE_WITH_VARIABLES, variables });

    it('refuses any hashedKey but the sentinel, and creates nothing', async () => {
      const username = uniqueSlug('chosen');
      const response = await create({ tenantId, input: input({ username, hashedKey: 'a'.repeat(64) }) }).expect(200);
      expect(response.body.data).toBeNull();
      expect(response.body.errors).toHaveLength(1);
      expect(response.body.errors[0]).toMatchObject({
        message: expect.stringContaining('__GENERATE_TOKEN__'),
        path: ['createMachineUserWithCredentials'],
        extensions: {
          code: 'VALIDATION_FAILED',
          errors: [{ field: 'input.hashedKey', message: expect.stringContaining('__GENERATE_TOKEN__') }],
        },
      });
      const users = await t.http.get(`/api/tenants/${tenantId}/machine-users?limit=200`).set(adminAuth).expect(200);
      expect(users.body.items.map((user: { username: string }) => user.username)).not.toContain(username);
    });

    it('is NOT_FOUND for an unknown or malformed tenant', async () => {
      for (const missing of ['00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
        const response = await create({ tenantId: missing, input: input() }).expect(200);
        expect(response.body.data).toBeNull();
        expect(response.body.errors[0].extensions).toEqual({ code: 'NOT_FOUND' });
        expect(response.body.errors[0].message).toBe('Tenant not found');
      }
    });

    it('is CONFLICT for a username taken in the tenant, without quoting SQL', async () => {
      const fields = input();
      await create({ tenantId, input: fields }).expect(200);
      const response = await create({ tenantId, input: fields }).expect(200);
      expect(response.body.data).toBeNull();
      expect(response.body.errors[0].extensions).toEqual({ code: 'CONFLICT' });
      expect(response.body.errors[0].message).not.toMatch(/insert|constraint|duplicate key/i);
    });

    it('validates name and username with the REST rules, listing each field', async () => {
      const response = await create({
        tenantId,
        input: input({ name: 'x'.repeat(201), username: 'has space' }),
      }).expect(200);
      expect(response.body.data).toBeNull();
      const { code, errors } = response.body.errors[0].extensions;
      expect(code).toBe('VALIDATION_FAILED');
      expect(errors.map((error: { field: string }) => error.field).sort()).toEqual(['input.name', 'input.username']);
      const all = await create({ tenantId, input: input({ username: 'a b', hashedKey: 'mine' }) }).expect(200);
      expect(all.body.errors[0].extensions.errors.map((error: { field: string }) => error.field)).toEqual([
        'input.username',
        'input.hashedKey',
      ]);
      const empty = await create({ tenantId, input: input({ name: '' }) }).expect(200);
      expect(empty.body.errors[0].extensions.errors).toEqual([{ field: 'input.name', message: expect.any(String) }]);
    });
  });

  describe('request errors: 400 with only errors', () => {
    const expectRequestError = async (body: object, message: RegExp) => {
      const response = await graphql(body).expect(400);
      expect(response.body).not.toHaveProperty('data');
      expect(response.body.errors[0]).toMatchObject({ message: expect.stringMatching(message) });
      expect(response.body.errors[0].extensions.code).toBe('VALIDATION_FAILED');
      return response;
    };

    it('refuses a syntax error, with its location', async () => {
      const response = await expectRequestError(
        { query: 'mutation { createMachineUserWithCredentials(' },
        /Syntax Error/,
      );
      expect(response.body.errors[0].locations).toEqual([{ line: 1, column: expect.any(Number) }]);
    });

    it('refuses an unknown field in the selection', async () => {
      await expectRequestError(
        {
          query: `mutation { createMachineUserWithCredentials(tenantId: "${tenantId}", input: {name: "a", username: "b", hashedKey: "__GENERATE_TOKEN__"}) { password } }`,
        },
        /Cannot query field "password"/,
      );
    });

    it('refuses an argument of the wrong type and a missing required one', async () => {
      await expectRequestError(
        { query: seedMutation(tenantId, 'u').replace('enabled: true', 'enabled: "yes"') },
        /Boolean/,
      );
      await expectRequestError(
        {
          query: `mutation { createMachineUserWithCredentials(input: {name: "a", username: "b", hashedKey: "k"}) { tokenId } }`,
        },
        /tenantId/,
      );
    });

    it('refuses variables that do not match their declared types', async () => {
      await expectRequestError({ query: CREATE_WITH_VARIABLES, variables: { tenantId } }, /\$input/);
      await expectRequestError(
        { query: CREATE_WITH_VARIABLES, variables: { tenantId, input: { ...input(), enabled: 'yes' } } },
        /enabled/,
      );
      await expectRequestError(
        { query: CREATE_WITH_VARIABLES, variables: { tenantId, input: { ...input(), roles: ['admin'] } } },
        /roles/,
      );
    });

    it('refuses a mutation field in a query, and an ambiguous document without operationName', async () => {
      await expectRequestError(
        {
          query: `query { createMachineUserWithCredentials(tenantId: "x", input: {name: "a", username: "b", hashedKey: "k"}) { tokenId } }`,
        },
        /Cannot query field/,
      );
      const twoOperations = 'query A { machineUser(id: "x") { id } } query B { machineUser(id: "y") { id } }';
      await expectRequestError({ query: twoOperations }, /operation name/);
      await graphql({ query: twoOperations, operationName: 'B' }).expect(200, { data: { machineUser: null } });
      await expectRequestError({ query: twoOperations, operationName: 'C' }, /Unknown operation named "C"/);
    });

    it('refuses a body that is not a GraphQL request with the §3 error body', async () => {
      const missing = await graphql({ variables: {} }).expect(400);
      expect(missing.body).toMatchObject({ statusCode: 400, code: 'VALIDATION_FAILED' });
      expect(missing.body.errors).toContainEqual(expect.objectContaining({ field: 'query' }));
      const unknown = await graphql({ query: '{ __typename }', tenantId }).expect(400);
      expect(unknown.body.errors).toEqual([{ field: 'tenantId', message: 'is not allowed' }]);
      // GraphQL-over-HTTP's own optional fields are accepted, null included.
      await graphql({ query: '{ __typename }', variables: null, operationName: null, extensions: {} }).expect(200, {
        data: { __typename: 'Query' },
      });
    });
  });

  describe('access', () => {
    it('needs the admin token: 401 without or with a bad one, 403 with a machine token', async () => {
      const body = { query: '{ __typename }' };
      const anonymous = await t.http.post('/graphql').send(body).expect(401);
      expect(anonymous.body).toEqual({ statusCode: 401, code: 'UNAUTHENTICATED', message: expect.any(String) });
      await t.http.post('/graphql').set(bearer('not-the-admin-token')).send(body).expect(401);
      const machine = await createMachineUser(t, tenantId, ['operator']);
      const forbidden = await t.http.post('/graphql').set(bearer(machine.token)).send(body).expect(403);
      expect(forbidden.body).toMatchObject({ statusCode: 403, code: 'FORBIDDEN' });
    });

    it('is documented in the OpenAPI document with an example request', async () => {
      const document = (await t.http.get('/docs-json').expect(200)).body;
      const operation = document.paths['/graphql'].post;
      const examples = operation.requestBody.content['application/json'].examples;
      expect(examples.seed.value.query).toContain('createMachineUserWithCredentials');
      expect(Object.keys(operation.responses)).toEqual(expect.arrayContaining(['200', '400', '401', '403']));
    });
  });
});

describe('POST /graphql without ADMIN_TOKEN', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ env: { ADMIN_TOKEN: '' } });
  });
  afterAll(() => t.close());

  it('does not exist, like the rest of the admin API', async () => {
    const response = await t.http.post('/graphql').set(adminAuth).send({ query: '{ __typename }' }).expect(404);
    expect(response.body).toMatchObject({ statusCode: 404, code: 'NOT_FOUND' });
  });
});
