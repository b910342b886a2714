/** The public API as the scenarios seed it: one call, and the fixtures most of them need. */
export async function call(baseUrl: string, method: string, path: string, token: string, body?: unknown): Promise<any> {
  const response = await fetch(baseUrl + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

export interface SeededTenant {
  tenantId: string;
  applicationId: string;
  /** Token of a machine user holding `roles`. */
  machineToken: string;
}

/** A tenant "bench" with a project and an application, and one machine user with `roles`. */
export async function seedTenant(baseUrl: string, adminToken: string, roles: string[]): Promise<SeededTenant> {
  const tenant = await call(baseUrl, 'POST', '/api/tenants', adminToken, { name: 'Bench', slug: 'bench' });
  const project = await call(baseUrl, 'POST', `/api/tenants/${tenant.id}/projects`, adminToken, {
    name: 'Bench',
    slug: 'bench',
  });
  const application = await call(baseUrl, 'POST', `/api/projects/${project.id}/applications`, adminToken, {
    name: 'Bench',
    slug: 'bench',
  });
  const user = await call(baseUrl, 'POST', `/api/tenants/${tenant.id}/machine-users`, adminToken, {
    name: 'Bench machine user',
    username: 'bench-machine',
    roles,
  });
  return { tenantId: tenant.id, applicationId: application.id, machineToken: user.generatedToken };
}

export interface RegisteredBackend {
  id: string;
  callbackUrl: string;
  signingSecret: string;
}

/** `count` backends registered by the machine user; `describe` gives each one's registration body. */
export async function registerBackends(
  baseUrl: string,
  token: string,
  count: number,
  describe: (index: number) => { name: string; callbackUrl: string; description?: string; runKeys?: string[] },
): Promise<RegisteredBackend[]> {
  const backends: RegisteredBackend[] = [];
  for (let index = 0; index < count; index++) {
    const backend = await call(baseUrl, 'POST', '/api/machine/register-backend', token, describe(index));
    backends.push({ id: backend.id, callbackUrl: backend.callbackUrl, signingSecret: backend.signingSecret });
  }
  return backends;
}
