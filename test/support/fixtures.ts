import { randomBytes } from 'node:crypto';
import { ADMIN_TOKEN, type TestApp } from './app.js';

export const adminAuth = { authorization: `Bearer ${ADMIN_TOKEN}` };
export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

export function uniqueSlug(prefix = 't'): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export interface SeededMachineUser {
  token: string;
  tokenId: string;
  machineUser: { id: string; tenantId: string; name: string; username: string; enabled: boolean; roles: string[] };
}

export interface SeededTenant {
  tenant: { id: string; name: string; slug: string };
  project: { id: string; name: string; slug: string };
  application: { id: string; name: string; slug: string; signingSecret: string };
  /** Holds the `backend` role. */
  backendUser: SeededMachineUser;
  /** Holds the `operator` role. */
  operatorUser: SeededMachineUser;
}

/** Creates a machine user through the admin API. */
export async function createMachineUser(t: TestApp, tenantId: string, roles: string[] = ['backend']) {
  const username = uniqueSlug('mu');
  const response = await t.http
    .post(`/api/tenants/${tenantId}/machine-users`)
    .set(adminAuth)
    .send({ name: `User ${username}`, username, roles })
    .expect(201);
  return {
    token: response.body.generatedToken,
    tokenId: response.body.tokenId,
    machineUser: response.body.machineUser,
  } as SeededMachineUser;
}

/** A tenant → project → application tree with a backend user and an operator, through the admin API. */
export async function seedTenant(t: TestApp): Promise<SeededTenant> {
  const slug = uniqueSlug('tenant');
  const tenant = (
    await t.http
      .post('/api/tenants')
      .set(adminAuth)
      .send({ name: `Tenant ${slug}`, slug })
      .expect(201)
  ).body;
  const project = (
    await t.http
      .post(`/api/tenants/${tenant.id}/projects`)
      .set(adminAuth)
      .send({ name: 'Project', slug: 'project' })
      .expect(201)
  ).body;
  const application = (
    await t.http
      .post(`/api/projects/${project.id}/applications`)
      .set(adminAuth)
      .send({ name: 'Application', slug: 'application' })
      .expect(201)
  ).body;
  const backendUser = await createMachineUser(t, tenant.id, ['backend']);
  const operatorUser = await createMachineUser(t, tenant.id, ['operator']);
  return { tenant, project, application, backendUser, operatorUser };
}
