import type { EntityManager } from '@mikro-orm/postgresql';

/** What the delivery engine needs to send one signed call to a backend. */
export interface DeliveryTarget {
  id: string;
  tenantId: string;
  callbackUrl: string;
  enabled: boolean;
  /** Per-attempt timeout; null: the server default (DELIVERY_TIMEOUT_MS). */
  timeoutMs: number | null;
  /** Every secret that still signs, newest first (two or more during a rotation overlap). */
  secrets: string[];
}

/** A backend that a cron firing with a given run key fans out to. */
export interface RoutableBackend {
  id: string;
  tenantId: string;
  machineUserId: string;
  name: string;
  callbackUrl: string;
}

/** A backend as other modules may quote it (trigger `backendId` checks, delivery listings). */
export interface BackendSummary {
  id: string;
  tenantId: string;
  machineUserId: string;
  name: string;
  callbackUrl: string;
  enabled: boolean;
}

/**
 * Called inside the transaction that turns a disabled backend back on (PATCH `enabled: true`
 * or a re-registration), so whatever the listener writes — the delivery engine re-queueing
 * the backend's PARKED deliveries — commits or rolls back together with the switch.
 */
export type BackendEnabledListener = (em: EntityManager, backendId: string) => Promise<void>;
