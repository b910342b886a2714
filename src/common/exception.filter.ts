import { randomUUID } from 'node:crypto';
import { type ArgumentsHost, Catch, type ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import { NotFoundError, UniqueConstraintViolationException } from '@mikro-orm/core';
import type { FastifyReply } from 'fastify';
import { hasSqlState, isDatabaseUnavailable, UNIQUE_VIOLATION } from './database-errors.js';
import { DomainException, ErrorCode } from './errors.js';

export interface ErrorBody {
  statusCode: number;
  code: string;
  message: string;
  [detail: string]: unknown;
}

const FASTIFY_CODES: Record<string, { code: ErrorCode; message: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'PAYLOAD_TOO_LARGE', message: 'Request body is larger than 1 MiB' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    code: 'VALIDATION_FAILED',
    message: 'Request body must be JSON (content-type: application/json)',
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'VALIDATION_FAILED', message: 'Content-Length does not match the body' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'VALIDATION_FAILED', message: 'Request body must be a JSON object' },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'INVALID_JSON', message: 'Request body is not valid JSON' },
};

/**
 * Maps every error to the contract's body. Bad input never becomes a 500: anything unknown
 * is logged with an error id that the body repeats, and no stack leaves the process.
 */
@Catch()
export class AllExceptionsFilter implements ExceptionFilter {
  private readonly logger = new Logger('Errors');

  catch(exception: unknown, host: ArgumentsHost): void {
    const reply = host.switchToHttp().getResponse<FastifyReply>();
    const { body, headers } = this.toErrorBody(exception);
    for (const [name, value] of Object.entries(headers)) void reply.header(name, value);
    void reply.status(body.statusCode).header('content-type', 'application/json; charset=utf-8').send(body);
  }

  toErrorBody(exception: unknown): { body: ErrorBody; headers: Record<string, string> } {
    if (exception instanceof DomainException) {
      return {
        body: {
          statusCode: exception.statusCode,
          code: exception.code,
          message: exception.message,
          ...exception.details,
        },
        headers: exception.headers,
      };
    }
    // Nest's Fastify adapter wraps Fastify's 4xx errors in an HttpException with the original as cause.
    const fastifyError = exception instanceof HttpException ? exception.cause : exception;
    const fastifyCode = (fastifyError as { code?: unknown } | null | undefined)?.code;
    if (typeof fastifyCode === 'string' && FASTIFY_CODES[fastifyCode]) {
      const known = FASTIFY_CODES[fastifyCode];
      return { body: body(known.code, known.message), headers: {} };
    }
    if (exception instanceof SyntaxError && (exception as { statusCode?: number }).statusCode === 400) {
      return { body: body('INVALID_JSON', 'Request body is not valid JSON'), headers: {} };
    }
    if (exception instanceof UniqueConstraintViolationException || hasSqlState(exception, UNIQUE_VIOLATION)) {
      return { body: body('CONFLICT', 'An object with this name, slug or username already exists'), headers: {} };
    }
    if (exception instanceof NotFoundError) {
      return { body: body('NOT_FOUND', 'Resource not found'), headers: {} };
    }
    if (isDatabaseUnavailable(exception)) {
      this.logger.warn(`database unavailable: ${(exception as Error).message}`);
      return {
        body: body('UNAVAILABLE', 'The database is unavailable or busy; retry shortly'),
        headers: { 'retry-after': '1' },
      };
    }
    if (exception instanceof HttpException) {
      return { body: fromHttpException(exception), headers: {} };
    }
    const errorId = randomUUID();
    this.logger.error({ err: exception, errorId }, `unhandled error ${errorId}`);
    return {
      body: { ...body('INTERNAL_ERROR', `Internal error; quote error id ${errorId}`), errorId },
      headers: {},
    };
  }
}

function body(code: ErrorCode, message: string): ErrorBody {
  return { statusCode: ErrorCode[code], code, message };
}

const HTTP_STATUS_CODES: Record<number, ErrorCode> = {
  400: 'VALIDATION_FAILED',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'NOT_FOUND',
  409: 'CONFLICT',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'VALIDATION_FAILED',
  429: 'RATE_LIMITED',
  503: 'UNAVAILABLE',
};

function fromHttpException(exception: HttpException): ErrorBody {
  const status = exception.getStatus();
  const code = HTTP_STATUS_CODES[status] ?? (status >= 500 ? 'INTERNAL_ERROR' : 'VALIDATION_FAILED');
  const message = status === 404 || status === 405 ? 'Route not found' : exception.message;
  return body(code, message);
}
