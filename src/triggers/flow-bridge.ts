import { Injectable } from '@nestjs/common';
import type { EntityManager } from '@mikro-orm/postgresql';

/** What the flows module offers cron triggers; it registers itself here when it exists. */
export interface FlowStarter {
  flowExists(tenantId: string, applicationId: string, flowId: string): Promise<boolean>;
  /** Starts an execution in the caller's transaction; `data` is the cron payload. */
  startFromCron(em: EntityManager, input: { tenantId: string; flowId: string; data: unknown }): Promise<string>;
}

/**
 * Lets the flows module plug into cron triggers without the triggers module importing it
 * (flows depend on triggers' neighbours, not the other way round).
 */
@Injectable()
export class FlowBridge {
  private starter: FlowStarter | null = null;

  register(starter: FlowStarter): void {
    this.starter = starter;
  }

  get flows(): FlowStarter | null {
    return this.starter;
  }
}
