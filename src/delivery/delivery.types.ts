export const DELIVERY_STATUSES = ['PENDING', 'SENDING', 'SUCCEEDED', 'DEAD', 'PARKED'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

export type OriginType = 'trigger_run' | 'execution';

export interface DeliveryOrigin {
  type: OriginType;
  id: string;
}

/** A webhook to send; `body` is the exact text that will be signed and sent. */
export interface OutboundMessage {
  tenantId: string;
  /** A registered backend (its secret signs), or a URL signed with the application's secret. */
  target: { backendId: string; url?: string } | { applicationId: string; url: string };
  method?: string;
  /** Added to the standard headers, which they can never replace. */
  headers?: Record<string, string>;
  body: string;
  origin: DeliveryOrigin;
}

export interface EnqueuedDelivery {
  id: string;
  webhookId: string;
  status: DeliveryStatus;
}

/** What the origin of a delivery learns when the delivery reaches a final (or parked) state. */
export interface DeliveryOutcome {
  deliveryId: string;
  tenantId: string;
  origin: DeliveryOrigin;
  status: 'SUCCEEDED' | 'DEAD' | 'PARKED';
  statusCode: number | null;
  /** The answer's body: parsed JSON when it is JSON, else the text excerpt. */
  responseBody: unknown;
  error: string | null;
}
