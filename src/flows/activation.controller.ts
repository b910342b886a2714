import { applyDecorators, Controller, Get, Param, Post, Req, Res } from '@nestjs/common';
import { ApiHeader, ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Public } from '../auth/auth.decorators.js';
import { ApiErrors } from '../common/openapi.js';
import { type ActivationAnswer, type ActivationRequest, ActivationService } from './activation.service.js';

const ROUTE = 'api/automation/flow/:flowId/trigger/:triggerId/activate';

/** Request bodies of activations are measured here; the JSON parser records their size. */
export interface MeasuredRequest extends FastifyRequest {
  bodyBytes?: number;
}

/** What both methods of an activation URL take and answer, for the OpenAPI document. */
const ActivationDocs = () =>
  applyDecorators(
    ApiParam({ name: 'flowId', format: 'uuid' }),
    ApiParam({ name: 'triggerId', format: 'uuid' }),
    ApiHeader({ name: 'Idempotency-Key', required: false, description: '24 h, scoped to the trigger' }),
    ApiErrors(
      'EXECUTION_REQUIRED',
      'INVALID_PAYLOAD',
      'CALLBACK_AUTH_FAILED',
      'MISSING_ROLE',
      'TRIGGER_NOT_FOUND',
      'EXECUTION_NOT_FOUND',
      'NO_WAITING_EXECUTION',
      'EXECUTION_NOT_WAITING',
      'PAYLOAD_TOO_LARGE',
    ),
  );

@ApiTags('activation')
@Controller()
export class ActivationController {
  constructor(private readonly activation: ActivationService) {}

  @Public()
  @Get(ROUTE)
  @ApiOperation({
    summary: 'Activate a callback step: query parameters are the data',
    description:
      'Flow-starting step: starts an execution. Mid-flow step: ?execution=<id> | any | all resumes waiting ' +
      'executions. 200 with X-Execution-Id (or, for all, a comma list / {"executions": [...]}). ' +
      'Auth through Authorization: Bearer or user-token when the step asks for MACHINE_USER.',
  })
  @ApiResponse({ status: 200, description: 'activated (X-Activation: activated) or ignored (X-Activation: ignored)' })
  @ActivationDocs()
  get(
    @Param('flowId') flowId: string,
    @Param('triggerId') triggerId: string,
    @Req() request: MeasuredRequest,
    @Res() reply: FastifyReply,
  ) {
    return this.handle('GET', flowId, triggerId, request, reply);
  }

  @Public()
  @Post(ROUTE)
  @ApiOperation({ summary: 'Activate a callback step: the JSON body (any JSON value; empty = {}) is the data' })
  @ApiResponse({ status: 200, description: 'activated or ignored (see X-Activation)' })
  @ActivationDocs()
  post(
    @Param('flowId') flowId: string,
    @Param('triggerId') triggerId: string,
    @Req() request: MeasuredRequest,
    @Res() reply: FastifyReply,
  ) {
    return this.handle('POST', flowId, triggerId, request, reply);
  }

  private async handle(
    method: ActivationRequest['method'],
    flowId: string,
    triggerId: string,
    request: MeasuredRequest,
    reply: FastifyReply,
  ): Promise<void> {
    const answer: ActivationAnswer = await this.activation.activate({
      method,
      flowId,
      triggerId,
      query: (request.query ?? {}) as ActivationRequest['query'],
      body: request.body,
      bodyBytes: measuredBytes(request),
      headers: request.headers,
      baseUrl: `${request.protocol}://${request.host}`,
    });
    void reply.status(answer.statusCode).headers(answer.headers);
    await reply.send(answer.body ?? '');
  }
}

/**
 * The JSON parser records a body's size; Fastify's own text/plain parser does not, and its route
 * limit here is far above 1 MiB (see create-app), so a string body is measured here.
 */
function measuredBytes(request: MeasuredRequest): number {
  if (request.bodyBytes !== undefined) return request.bodyBytes;
  return typeof request.body === 'string' ? Buffer.byteLength(request.body) : 0;
}
