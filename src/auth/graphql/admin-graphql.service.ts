import { Injectable } from '@nestjs/common';
import { type DocumentNode, execute, GraphQLError, parse, validate } from 'graphql';
import { AllExceptionsFilter } from '../../common/exception.filter.js';
import { MachineUsersService } from '../machine-users.service.js';
import { type AdminGraphqlRoot, createAdminResolvers } from './admin-graphql.resolvers.js';
import { adminSchema } from './admin-graphql.schema.js';
import type { GraphqlErrorResponse, GraphqlRequestDto, GraphqlResponse } from './graphql-request.dto.js';

export interface GraphqlHttpResult {
  status: 200 | 400;
  body: GraphqlResponse;
}

/** Generous for this schema (the seed's mutation is ~40 tokens) and cheap to refuse beyond. */
const MAX_TOKENS = 2_000;

/**
 * Runs admin GraphQL requests with the reference implementation. HTTP status follows
 * GraphQL-over-HTTP: a request that never reached execution (syntax, validation, variable
 * coercion, unknown operationName) is 400 with `{errors}`; once execution starts the answer
 * is 200 with `{data, errors?}`, each error carrying a §3 code in `extensions.code`.
 */
@Injectable()
export class AdminGraphqlService {
  private readonly root: AdminGraphqlRoot;
  // The REST filter's mapping, reused so a unique violation or a database outage gets the
  // same code here as on every other route.
  private readonly errorMapper = new AllExceptionsFilter();

  constructor(machineUsers: MachineUsersService) {
    this.root = createAdminResolvers(machineUsers);
  }

  async execute(request: GraphqlRequestDto): Promise<GraphqlHttpResult> {
    let document: DocumentNode;
    try {
      document = parse(request.query, { maxTokens: MAX_TOKENS });
    } catch (error) {
      if (error instanceof GraphQLError) return requestErrors([error]);
      throw error;
    }
    const invalid = validate(adminSchema, document);
    if (invalid.length > 0) return requestErrors(invalid);

    const result = await execute({
      schema: adminSchema,
      document,
      rootValue: this.root,
      variableValues: request.variables ?? undefined,
      operationName: request.operationName ?? undefined,
    });
    // graphql-js leaves `data` out exactly when the request failed before execution.
    if (result.data === undefined) return requestErrors(result.errors ?? []);
    const body: GraphqlResponse = { data: result.data };
    if (result.errors?.length) body.errors = result.errors.map((error) => this.executionError(error));
    return { status: 200, body };
  }

  private executionError(error: GraphQLError): GraphqlErrorResponse {
    const { body } = this.errorMapper.toErrorBody(error.originalError ?? error);
    // The mapped message, never the raw one: a unique violation's raw message quotes SQL, and
    // an unknown error's stays in the log while the client gets its error id.
    const { statusCode: _statusCode, code, message, ...details } = body;
    return { message, ...located(error), extensions: { code, ...details } };
  }
}

function requestErrors(errors: readonly GraphQLError[]): GraphqlHttpResult {
  return {
    status: 400,
    body: {
      errors: errors.map((error) => ({
        message: error.message,
        ...located(error),
        extensions: { ...error.extensions, code: 'VALIDATION_FAILED' },
      })),
    },
  };
}

function located(error: GraphQLError): Pick<GraphqlErrorResponse, 'locations' | 'path'> {
  return {
    ...(error.locations && { locations: [...error.locations] }),
    ...(error.path && { path: [...error.path] }),
  };
}
