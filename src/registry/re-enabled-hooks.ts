import { Injectable } from '@nestjs/common';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { BackendEnabledListener } from './registry.types.js';

/**
 * The seam between "a backend was switched back on" (this module) and "re-queue its PARKED
 * deliveries" (the delivery module, which depends on this one and so cannot be called from
 * here directly). Listeners subscribe through RegistryService.onBackendEnabled.
 */
@Injectable()
export class ReEnabledHooks {
  private readonly listeners = new Set<BackendEnabledListener>();

  subscribe(listener: BackendEnabledListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Runs every listener in the caller's transaction; one failing rolls the re-enable back. */
  async announce(em: EntityManager, backendId: string): Promise<void> {
    for (const listener of this.listeners) await listener(em, backendId);
  }
}
