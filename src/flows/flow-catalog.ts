import { Injectable } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import type { ValidateFunction } from 'ajv';
import { sharedReads } from '../common/group-commit.js';
import { parseDuration } from './duration.js';
import {
  type CallbackStepDefinition,
  type DelayStepDefinition,
  compilePayloadSchema,
  type StepDefinition,
  type WebhookStepDefinition,
} from './flow-definition.js';
import { Flow, FlowVersion } from './flows.entities.js';
import { JqExpression, JsonTemplate } from './jq-expression.js';

export interface CompiledCallback {
  type: 'callback';
  definition: CallbackStepDefinition;
  conditions: JqExpression[];
  validate: ValidateFunction | null;
  timeoutMs: number | null;
}

export interface CompiledWebhook {
  type: 'webhook';
  definition: WebhookStepDefinition;
  url: JsonTemplate | null;
  headers: JsonTemplate;
  /** Null: the body is the whole execution context. */
  body: JsonTemplate | null;
}

export interface CompiledDelay {
  type: 'delay';
  definition: DelayStepDefinition;
  durationMs: number;
}

export type CompiledStep = CompiledCallback | CompiledWebhook | CompiledDelay;

export interface CompiledVersion {
  flowId: string;
  version: number;
  steps: CompiledStep[];
}

const MAX_CACHED_VERSIONS = 5_000;

interface FlowRow {
  id: string;
  tenant_id: string;
  application_id: string;
  name: string;
  version: number;
  public_base_url: string | null;
  created_at: string | Date;
  updated_at: string | Date;
}

/**
 * Flow versions are immutable, so each is compiled once per process (jq parsed, JSON Schemas
 * compiled, templates prepared) and kept: activations and steps never parse anything.
 */
@Injectable()
export class FlowCatalog {
  private readonly versions = new Map<string, Promise<CompiledVersion | null>>();
  /** Concurrent reads of one flow row share a query (sharedReads): one per flow at a time, not per activation. */
  private readonly flowReads = sharedReads(({ tenantId, flowId }: { tenantId: string | null; flowId: string }) =>
    this.readFlow(tenantId, flowId),
  );

  constructor(private readonly em: EntityManager) {}

  version(flowId: string, version: number): Promise<CompiledVersion | null> {
    const key = `${flowId}:${version}`;
    let compiled = this.versions.get(key);
    if (!compiled) {
      compiled = this.load(flowId, version);
      if (this.versions.size >= MAX_CACHED_VERSIONS) this.versions.clear();
      this.versions.set(key, compiled);
      compiled.then((value) => value === null && this.versions.delete(key)).catch(() => this.versions.delete(key));
    }
    return compiled;
  }

  /**
   * The flow as it is now: never cached, so that a PUT on any replica takes effect at once. Read as a
   * plain row, not a managed entity (no fork identity map, no hydration): every activation asks
   * (concurrent asks share one query, never an answer older than the ask: flowReads).
   */
  async current(tenantId: string | null, flowId: string): Promise<{ flow: Flow; compiled: CompiledVersion } | null> {
    const row = await this.flowReads.submit(`${tenantId}:${flowId}`, { tenantId, flowId });
    if (!row) return null;
    const flow = Object.assign(new Flow(), {
      id: row.id,
      tenantId: row.tenant_id,
      applicationId: row.application_id,
      name: row.name,
      version: row.version,
      publicBaseUrl: row.public_base_url,
      createdAt: new Date(row.created_at),
      updatedAt: new Date(row.updated_at),
    });
    const compiled = await this.version(flow.id, flow.version);
    return compiled && { flow, compiled };
  }

  private async readFlow(tenantId: string | null, flowId: string): Promise<FlowRow | null> {
    const [row] = await this.em.fork().execute<FlowRow[]>(
      `select id, tenant_id, application_id, name, version, public_base_url, created_at, updated_at
         from flows where id = ?${tenantId ? ' and tenant_id = ?' : ''}`,
      tenantId ? [flowId, tenantId] : [flowId],
    );
    return row ?? null;
  }

  /** Which version of the flow holds a callback step with this trigger id (newest first). */
  async versionWithTrigger(flowId: string, triggerId: string): Promise<number | null> {
    const rows = await this.em
      .fork()
      .execute<{ version: number }[]>(
        `select version from flow_versions where flow_id = ? and steps @> ?::jsonb order by version desc limit 1`,
        [flowId, JSON.stringify([{ triggerId }])],
      );
    return rows[0]?.version ?? null;
  }

  private async load(flowId: string, version: number): Promise<CompiledVersion | null> {
    const row = await this.em.fork().findOne(FlowVersion, { flowId, version });
    return row && { flowId, version, steps: row.steps.map(compileStep) };
  }
}

export function compileStep(step: StepDefinition): CompiledStep {
  switch (step.type) {
    case 'callback':
      return {
        type: 'callback',
        definition: step,
        conditions: step.condition?.expressions.map((expression) => JqExpression.compile(expression)) ?? [],
        validate: step.schema === undefined ? null : compilePayloadSchema(step.schema),
        timeoutMs: step.timeout === undefined ? null : parseDuration(step.timeout),
      };
    case 'webhook': {
      const method = step.invocationMethod;
      return {
        type: 'webhook',
        definition: step,
        url: method?.url ? JsonTemplate.compile(method.url) : null,
        headers: JsonTemplate.compile(method?.headers ?? {}),
        body: method && 'body' in method ? JsonTemplate.compile(method.body) : null,
      };
    }
    case 'delay':
      return { type: 'delay', definition: step, durationMs: parseDuration(step.duration) ?? 0 };
  }
}
