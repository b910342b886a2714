import { randomBytes } from 'node:crypto';
import type { TestApp } from './app.js';
import { bearer, type SeededTenant } from './fixtures.js';
import { eventually } from './receiver.js';

export interface FlowStep {
  type: 'callback' | 'webhook' | 'delay';
  name: string;
  triggerId?: string;
  activationUrl?: string;
  [field: string]: unknown;
}

export interface FlowBody {
  id: string;
  applicationId: string;
  name: string;
  version: number;
  steps: FlowStep[];
  createdAt: string;
  updatedAt: string;
}

export interface HistoryEntry {
  at: string;
  type: string;
  step: string | null;
  detail: Record<string, any> | null;
}

export interface ExecutionBody {
  id: string;
  flowId: string;
  flowVersion: number;
  status: 'running' | 'waiting' | 'completed' | 'failed' | 'cancelled';
  currentStep: string | null;
  waitingAt: { step: string; triggerId: string; since: string; deadline: string | null } | null;
  context: Record<string, any>;
  history: HistoryEntry[];
  createdAt: string;
  updatedAt: string;
}

export function uniqueName(prefix = 'flow'): string {
  return `${prefix} ${randomBytes(4).toString('hex')}`;
}

/** The activation path of a flow's callback step, by step name (relative, for supertest). */
export function activationPath(flow: FlowBody, stepName: string): string {
  const step = flow.steps.find((candidate) => candidate.name === stepName);
  if (!step?.triggerId) throw new Error(`flow ${flow.id} has no callback step "${stepName}"`);
  return `/api/automation/flow/${flow.id}/trigger/${step.triggerId}/activate`;
}

/** Flows and executions through the operator API of one seeded tenant. */
export class FlowsClient {
  constructor(
    private readonly t: TestApp,
    private readonly seed: SeededTenant,
  ) {}

  get operator(): { authorization: string } {
    return bearer(this.seed.operatorUser.token);
  }

  async create(steps: object[], name = uniqueName()): Promise<FlowBody> {
    const response = await this.t.http
      .post(`/api/applications/${this.seed.application.id}/flows`)
      .set(this.operator)
      .send({ name, steps });
    if (response.status !== 201) throw new Error(`flow not created: ${response.status} ${response.text}`);
    return response.body;
  }

  async start(flowId: string, input?: unknown): Promise<ExecutionBody> {
    const response = await this.t.http
      .post(`/api/flows/${flowId}/executions`)
      .set(this.operator)
      .send(input === undefined ? {} : { input });
    if (response.status !== 201) throw new Error(`execution not started: ${response.status} ${response.text}`);
    return response.body;
  }

  async get(executionId: string): Promise<ExecutionBody> {
    const response = await this.t.http.get(`/api/executions/${executionId}`).set(this.operator).expect(200);
    return response.body;
  }

  /** Polls the execution until `done` holds (steps after an activation run in the background). */
  until(executionId: string, done: (execution: ExecutionBody) => boolean): Promise<ExecutionBody> {
    return eventually(async () => {
      const execution = await this.get(executionId);
      return done(execution) && execution;
    });
  }

  /** Polls until the execution waits at `step`. */
  waitingAt(executionId: string, step: string): Promise<ExecutionBody> {
    return this.until(executionId, (execution) => execution.status === 'waiting' && execution.waitingAt?.step === step);
  }

  /** Starts by API and returns once the execution waits at `step`. */
  async startWaiting(flowId: string, step: string, input?: unknown): Promise<ExecutionBody> {
    const started = await this.start(flowId, input);
    return this.waitingAt(started.id, step);
  }
}
