import { randomUUID } from 'node:crypto';
import { Ajv, type ErrorObject } from 'ajv';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { DomainException, type FieldError } from '../common/errors.js';
import { NAME_MAX } from '../common/validators.js';
import { parseDuration } from './duration.js';
import { JqCompileError, JqExpression, JsonTemplate } from './jq-expression.js';

export const MAX_STEPS = 100;
const ROLE = '^[A-Za-z0-9._:-]{1,100}$';
const UUID = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

export interface CallbackStepDefinition {
  type: 'callback';
  name: string;
  /** Server-assigned, stable for as long as a step of this name and type exists. */
  triggerId: string;
  auth?: { type: 'NONE' | 'MACHINE_USER'; requiredRoles?: string[]; onFail?: 'ERROR' | 'IGNORE' };
  condition?: { type: 'JQ'; expressions: string[]; combinator?: 'and' | 'or' };
  schema?: object | boolean;
  timeout?: string;
  onTimeout?: 'fail' | 'continue';
}

export interface WebhookStepDefinition {
  type: 'webhook';
  name: string;
  backendId?: string;
  invocationMethod?: {
    type?: 'WEBHOOK';
    url?: string;
    method?: string;
    headers?: Record<string, string>;
    body?: unknown;
  };
}

export interface DelayStepDefinition {
  type: 'delay';
  name: string;
  duration: string;
}

export type StepDefinition = CallbackStepDefinition | WebhookStepDefinition | DelayStepDefinition;

const name = { type: 'string', minLength: 1, maxLength: NAME_MAX };
const STEP_SCHEMAS = {
  callback: {
    type: 'object',
    additionalProperties: false,
    required: ['type', 'name'],
    properties: {
      type: { const: 'callback' },
      name,
      auth: {
        type: 'object',
        additionalProperties: false,
        required: ['type'],
        properties: {
          type: { enum: ['NONE', 'MACHINE_USER'] },
          requiredRoles: { type: 'array', maxItems: 50, uniqueItems: true, items: { type: 'string', pattern: ROLE } },
          onFail: { enum: ['ERROR', 'IGNORE'] },
        },
      },
      condition: {
        type: 'object',
        additionalProperties: false,
        required: ['type', 'expressions'],
        properties: {
          type: { const: 'JQ' },
          expressions: {
            type: 'array',
            minItems: 1,
            maxItems: 20,
            items: { type: 'string', minLength: 1, maxLength: 2000 },
          },
          combinator: { enum: ['and', 'or'] },
        },
      },
      schema: { type: ['object', 'boolean'] },
      timeout: { type: 'string', maxLength: 50 },
      onTimeout: { enum: ['fail', 'continue'] },
    },
  },
  webhook: {
    type: 'object',
    additionalProperties: false,
    required: ['type', 'name'],
    properties: {
      type: { const: 'webhook' },
      name,
      backendId: { type: 'string', pattern: UUID },
      invocationMethod: {
        type: 'object',
        additionalProperties: false,
        properties: {
          type: { const: 'WEBHOOK' },
          url: { type: 'string', minLength: 1, maxLength: 2048 },
          method: { enum: ['POST', 'PUT', 'PATCH', 'DELETE', 'GET'] },
          headers: {
            type: 'object',
            maxProperties: 50,
            propertyNames: { pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$" },
            additionalProperties: { type: 'string', maxLength: 4096 },
          },
          body: {},
        },
      },
    },
  },
  delay: {
    type: 'object',
    additionalProperties: false,
    required: ['type', 'name', 'duration'],
    properties: { type: { const: 'delay' }, name, duration: { type: 'string', maxLength: 50 } },
  },
} as const;

const shapeChecker = new Ajv({ allErrors: true, strict: false });
const shapeValidators = Object.fromEntries(
  Object.entries(STEP_SCHEMAS).map(([type, schema]) => [type, shapeChecker.compile(schema)]),
) as Record<StepDefinition['type'], ValidateFunction>;

/**
 * Compiles a callback step's JSON Schema (draft 2020-12). One Ajv instance per schema: a schema's
 * `$id` registers globally in an instance, and two flows (or two versions) may share one.
 */
export function compilePayloadSchema(schema: object | boolean): ValidateFunction {
  return new Ajv2020({ allErrors: true, strict: false }).compile(schema);
}

/**
 * Checks a flow's steps as a client sent them and returns them with server fields added:
 * unknown fields at any depth, duplicate names, bad durations, jq syntax and JSON Schemas are
 * refused at save time, each error naming its step. Callback steps keep the triggerId of the
 * previous version's step with the same name, so their activation URLs stay valid.
 */
export function validateSteps(raw: unknown, previous: StepDefinition[] = []): StepDefinition[] {
  if (!Array.isArray(raw)) throw DomainException.field('steps', 'must be an array of steps');
  if (raw.length < 1 || raw.length > MAX_STEPS) {
    throw DomainException.field('steps', `must hold between 1 and ${MAX_STEPS} steps`);
  }
  const errors: FieldError[] = [];
  raw.forEach((step, index) => errors.push(...shapeErrors(step, `steps[${index}]`)));
  if (errors.length) throw DomainException.validation(errors);

  const steps = raw as StepDefinition[];
  const seen = new Map<string, number>();
  steps.forEach((step, index) => {
    if (seen.has(step.name)) {
      errors.push({ field: `steps[${index}].name`, message: `duplicates the name of steps[${seen.get(step.name)}]` });
    }
    seen.set(step.name, index);
  });
  if (errors.length) throw DomainException.validation(errors);

  steps.forEach((step, index) => checkSemantics(step, `steps[${index}]`));
  const previousTriggers = new Map(
    previous.filter((step) => step.type === 'callback').map((step) => [step.name, step.triggerId]),
  );
  return steps.map((step) =>
    step.type === 'callback' ? { ...step, triggerId: previousTriggers.get(step.name) ?? randomUUID() } : step,
  );
}

function shapeErrors(step: unknown, path: string): FieldError[] {
  if (typeof step !== 'object' || step === null || Array.isArray(step))
    return [{ field: path, message: 'must be an object' }];
  const type = (step as { type?: unknown }).type;
  if (type !== 'callback' && type !== 'webhook' && type !== 'delay') {
    return [{ field: `${path}.type`, message: 'must be callback, webhook or delay' }];
  }
  const validate = shapeValidators[type];
  if (validate(step)) return [];
  return (validate.errors ?? []).map((error) => toFieldError(error, path));
}

function toFieldError(error: ErrorObject, path: string): FieldError {
  const pointer = error.instancePath
    .split('/')
    .slice(1)
    .map((part) => (/^\d+$/.test(part) ? `[${part}]` : `.${part.replace(/~1/g, '/').replace(/~0/g, '~')}`))
    .join('');
  if (error.keyword === 'additionalProperties') {
    return {
      field: `${path}${pointer}.${(error.params as { additionalProperty: string }).additionalProperty}`,
      message: 'is not allowed',
    };
  }
  if (error.keyword === 'required') {
    return {
      field: `${path}${pointer}.${(error.params as { missingProperty: string }).missingProperty}`,
      message: 'is required',
    };
  }
  return { field: `${path}${pointer}`, message: error.message ?? 'is invalid' };
}

function checkSemantics(step: StepDefinition, path: string): void {
  const named = `step "${step.name}" (${path})`;
  if (step.type === 'delay' && parseDuration(step.duration) === null) {
    throw new DomainException(
      'INVALID_DURATION',
      `${named}: duration "${step.duration}" is not an ISO-8601 duration like PT10M (no years or months)`,
      { field: `${path}.duration` },
    );
  }
  if (step.type === 'callback') {
    if (step.timeout !== undefined && parseDuration(step.timeout) === null) {
      throw new DomainException(
        'INVALID_DURATION',
        `${named}: timeout "${step.timeout}" is not an ISO-8601 duration like PT24H`,
        { field: `${path}.timeout` },
      );
    }
    step.condition?.expressions.forEach((expression, index) =>
      compileOrThrow(() => JqExpression.compile(expression), named, `${path}.condition.expressions[${index}]`),
    );
    if (step.schema !== undefined) {
      try {
        compilePayloadSchema(step.schema);
      } catch (error) {
        throw new DomainException('INVALID_SCHEMA', `${named}: ${(error as Error).message}`, {
          field: `${path}.schema`,
        });
      }
    }
  }
  if (step.type === 'webhook') {
    if (!step.backendId && !step.invocationMethod?.url) {
      throw DomainException.field(`${path}.backendId`, 'a webhook step needs a backendId or invocationMethod.url');
    }
    const method = step.invocationMethod;
    if (method) {
      compileOrThrow(() => JsonTemplate.compile(method.headers ?? {}), named, `${path}.invocationMethod.headers`);
      compileOrThrow(() => JsonTemplate.compile(method.body ?? null), named, `${path}.invocationMethod.body`);
      compileOrThrow(() => JsonTemplate.compile(method.url ?? ''), named, `${path}.invocationMethod.url`);
    }
  }
}

function compileOrThrow(compile: () => unknown, named: string, field: string): void {
  try {
    compile();
  } catch (error) {
    if (!(error instanceof JqCompileError)) throw error;
    throw new DomainException('INVALID_EXPRESSION', `${named}: ${error.message}`, { field });
  }
}
