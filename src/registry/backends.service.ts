import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { UniqueConstraintViolationException } from '@mikro-orm/core';
import { EntityManager } from '@mikro-orm/postgresql';
import { type MachinePrincipal, ROLE_OPERATOR } from '../auth/principal.js';
import { DomainException } from '../common/errors.js';
import type { ListQueryDto, Page } from '../common/pagination.js';
import { SigningSecretsService } from '../secrets/signing-secrets.service.js';
import { Backend } from './backend.entity.js';
import type {
  BackendResponse,
  BackendSigningSecretResponse,
  RegisteredBackendResponse,
  RegisterBackendDto,
  UpdateBackendDto,
} from './backends.dto.js';
import { BackendsRepository } from './backends.repository.js';
import { CallbackUrlPolicy } from './callback-url.policy.js';
import { ReEnabledHooks } from './re-enabled-hooks.js';
import { runKeyErrors } from './run-keys.js';

export type Registration =
  { created: true; backend: RegisteredBackendResponse } | { created: false; backend: BackendResponse };

/** A conflicting row deleted between our insert and our lock is the only reason to go round again. */
const REGISTER_ATTEMPTS = 3;

/** Backends as machine users manage them; every query is tenant-scoped through the principal. */
@Injectable()
export class BackendsService {
  constructor(
    private readonly em: EntityManager,
    private readonly backends: BackendsRepository,
    private readonly secrets: SigningSecretsService,
    private readonly callbackUrls: CallbackUrlPolicy,
    private readonly reEnabled: ReEnabledHooks,
  ) {}

  /** Creates the caller's backend of that name, or updates and re-enables it (backends re-register at boot). */
  async register(principal: MachinePrincipal, input: RegisterBackendDto): Promise<Registration> {
    assertRunKeys(input.runKeys);
    // Outside the transaction: DNS may be slow and must not hold a connection.
    await this.callbackUrls.assertAcceptable(input.callbackUrl);
    for (let attempt = 0; attempt < REGISTER_ATTEMPTS; attempt++) {
      const registration = await this.em.transactional((em) => this.registerOnce(em, principal, input));
      if (registration) return registration;
    }
    throw new DomainException('UNAVAILABLE', 'The backend changed concurrently; retry', {}, { 'retry-after': '1' });
  }

  list(principal: MachinePrincipal, query: ListQueryDto): Promise<Page<BackendResponse>> {
    return this.backends.page(this.em, visibleTo(principal), query, presentBackend);
  }

  async get(principal: MachinePrincipal, id: string): Promise<BackendResponse> {
    return presentBackend(await this.findVisible(this.em, principal, id));
  }

  async update(principal: MachinePrincipal, id: string, input: UpdateBackendDto): Promise<BackendResponse> {
    assertRunKeys(input.runKeys);
    if (input.callbackUrl !== undefined) await this.callbackUrls.assertAcceptable(input.callbackUrl);
    return this.em.transactional(async (em) => {
      // Locked, so that of two concurrent `enabled: true` only one sees the switch and re-queues.
      const backend = await this.findVisible(em, principal, id, { lock: true });
      const wasEnabled = backend.enabled;
      em.assign(backend, definedOnly(input));
      await flushNamed(em, backend.name);
      if (!wasEnabled && backend.enabled) await this.reEnabled.announce(em, backend.id);
      return presentBackend(backend);
    });
  }

  async remove(principal: MachinePrincipal, id: string): Promise<void> {
    await this.em.transactional(async (em) => {
      const backend = await this.findVisible(em, principal, id, { lock: true });
      await this.secrets.removeAll(em, backend.id);
      await this.backends.delete(em, backend.id);
    });
  }

  async rotateSecret(principal: MachinePrincipal, id: string): Promise<BackendSigningSecretResponse> {
    return this.em.transactional(async (em) => {
      // Locked against a concurrent delete, which would otherwise leave the new secret orphaned.
      const backend = await this.findVisible(em, principal, id, { lock: true });
      const signingSecret = await this.secrets.rotate(em, {
        tenantId: backend.tenantId,
        ownerType: 'backend',
        ownerId: backend.id,
      });
      await em.flush();
      return { signingSecret };
    });
  }

  /** The backend if this principal may see it; 404 alike for another tenant's, another user's and none. */
  async findVisible(
    em: EntityManager,
    principal: MachinePrincipal,
    id: string,
    options: { lock?: boolean } = {},
  ): Promise<Backend> {
    const backend = await this.backends.findOne(em, visibleTo(principal, id), options);
    if (!backend) throw DomainException.notFound('Backend');
    return backend;
  }

  /** One attempt; null when the name's owner row vanished between the insert and the lock. */
  private async registerOnce(
    em: EntityManager,
    principal: MachinePrincipal,
    input: RegisterBackendDto,
  ): Promise<Registration | null> {
    const now = new Date();
    const row: Backend = {
      id: randomUUID(),
      tenantId: principal.tenantId,
      machineUserId: principal.machineUserId,
      name: input.name,
      callbackUrl: input.callbackUrl,
      description: input.description ?? null,
      runKeys: input.runKeys ?? [],
      enabled: true,
      timeoutMs: input.timeoutMs ?? null,
      createdAt: now,
      updatedAt: now,
    };
    if (await this.backends.insertUnlessNameTaken(em, row)) {
      const signingSecret = this.secrets.issue(em, { tenantId: row.tenantId, ownerType: 'backend', ownerId: row.id });
      await em.flush();
      return { created: true, backend: { ...presentBackend(row), signingSecret } };
    }
    const existing = await this.backends.lockByOwnerAndName(em, principal.machineUserId, input.name);
    if (!existing) return null;
    const wasEnabled = existing.enabled;
    const { name: _sameName, ...changes } = input;
    em.assign(existing, { ...definedOnly(changes), enabled: true });
    await em.flush();
    if (!wasEnabled) await this.reEnabled.announce(em, existing.id);
    return { created: false, backend: presentBackend(existing) };
  }
}

/**
 * The tenant scope plus ownership: an operator manages every backend of its tenant, a
 * backend-only machine user just the ones it registered (SPEC §2).
 */
function visibleTo(principal: MachinePrincipal, id?: string) {
  return principal.scoped<Backend>({
    ...(id !== undefined && { id }),
    ...(!principal.hasRole(ROLE_OPERATOR) && { machineUserId: principal.machineUserId }),
  });
}

function assertRunKeys(runKeys: readonly unknown[] | undefined): void {
  const errors = runKeys ? runKeyErrors(runKeys) : [];
  if (errors.length > 0) throw DomainException.validation(errors);
}

/** The fields a PATCH or re-registration names; absent ones stay as they are (null is a value). */
function definedOnly<T extends object>(input: T): Partial<T> {
  return Object.fromEntries(Object.entries(input).filter(([, value]) => value !== undefined)) as Partial<T>;
}

async function flushNamed(em: EntityManager, name: string): Promise<void> {
  try {
    await em.flush();
  } catch (error) {
    // The only unique key a backend update can break is (machine_user_id, name).
    if (error instanceof UniqueConstraintViolationException) {
      throw new DomainException('CONFLICT', `The owning machine user already has a backend named "${name}"`);
    }
    throw error;
  }
}

function presentBackend(backend: Backend): BackendResponse {
  return {
    id: backend.id,
    name: backend.name,
    callbackUrl: backend.callbackUrl,
    description: backend.description,
    runKeys: [...backend.runKeys],
    enabled: backend.enabled,
    timeoutMs: backend.timeoutMs,
    machineUserId: backend.machineUserId,
    createdAt: backend.createdAt.toISOString(),
  };
}
