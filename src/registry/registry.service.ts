import { Injectable } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import type { MachinePrincipal } from '../auth/principal.js';
import { SigningSecretsService } from '../secrets/signing-secrets.service.js';
import type { Backend } from './backend.entity.js';
import { BackendsRepository } from './backends.repository.js';
import { BackendsService } from './backends.service.js';
import { CallbackUrlPolicy } from './callback-url.policy.js';
import { ReEnabledHooks } from './re-enabled-hooks.js';
import type { BackendEnabledListener, BackendSummary, DeliveryTarget, RoutableBackend } from './registry.types.js';

/**
 * What other modules (triggers, flows, the delivery engine) may ask of the registry; the only
 * export of RegistryModule. Reads take an optional EntityManager so a caller can read inside its
 * own transaction; without one they use a fresh fork, so they also work from workers that have
 * no request context.
 */
@Injectable()
export class RegistryService {
  constructor(
    private readonly em: EntityManager,
    private readonly backends: BackendsRepository,
    private readonly machineBackends: BackendsService,
    private readonly secrets: SigningSecretsService,
    private readonly reEnabled: ReEnabledHooks,
    private readonly urlPolicy: CallbackUrlPolicy,
  ) {}

  /** URL, state and every still-valid signing secret (newest first) of a backend; null once it is deleted. */
  async getDeliveryTarget(backendId: string): Promise<DeliveryTarget | null> {
    const backend = await this.backends.findOne(this.em.fork(), { id: backendId });
    if (!backend) return null;
    return {
      id: backend.id,
      tenantId: backend.tenantId,
      callbackUrl: backend.callbackUrl,
      enabled: backend.enabled,
      timeoutMs: backend.timeoutMs,
      secrets: await this.secrets.validSecrets(backend.id),
    };
  }

  /** Enabled backends of the tenant whose runKeys contain `runKey`, oldest first. */
  findRoutableBackends(tenantId: string, runKey: string, em?: EntityManager): Promise<RoutableBackend[]> {
    return this.backends.findRoutable(em ?? this.em.fork(), tenantId, runKey);
  }

  /** A backend of this tenant, or null: for checking a `backendId` given in a body (triggers, flow steps). */
  async findBackend(tenantId: string, backendId: string, em?: EntityManager): Promise<BackendSummary | null> {
    const backend = await this.backends.findOne(em ?? this.em.fork(), { id: backendId, tenantId });
    return backend && summarize(backend);
  }

  /**
   * The backend if this machine user may manage it, else 404 NOT_FOUND: for routes of other
   * modules that address a backend (`/api/machine/backends/:id/recover`).
   */
  async findAccessibleBackend(principal: MachinePrincipal, backendId: string): Promise<BackendSummary> {
    return summarize(await this.machineBackends.findVisible(this.em.fork(), principal, backendId));
  }

  /** Ids of the backends this machine user registered (what a backend-only user may see deliveries of). */
  ownedBackendIds(principal: MachinePrincipal): Promise<string[]> {
    return this.backends.idsOwnedBy(this.em.fork(), principal.tenantId, principal.machineUserId);
  }

  /**
   * Switches a backend off (its receiver answered 410 Gone), in the caller's transaction so the
   * parking of its deliveries commits with it. False if it was already off or is gone.
   */
  disableBackend(em: EntityManager, backendId: string): Promise<boolean> {
    return this.backends.disable(em, backendId);
  }

  /**
   * Subscribes to "a disabled backend was switched back on" (PATCH `enabled: true` or a
   * re-registration), delivered inside that transaction: the delivery engine re-queues the
   * backend's PARKED deliveries here. Returns an unsubscribe function.
   */
  onBackendEnabled(listener: BackendEnabledListener): () => void {
    return this.reEnabled.subscribe(listener);
  }

  /** The callback-URL rules (scheme, resolved addresses) for other outgoing URLs, webhook steps' included. */
  assertAcceptableUrl(url: string, field: string): Promise<void> {
    return this.urlPolicy.assertAcceptable(url, field);
  }
}

function summarize(backend: Backend): BackendSummary {
  return {
    id: backend.id,
    tenantId: backend.tenantId,
    machineUserId: backend.machineUserId,
    name: backend.name,
    callbackUrl: backend.callbackUrl,
    enabled: backend.enabled,
  };
}
