import { applyDecorators, type Type } from '@nestjs/common';
import { ApiExtraModels, ApiOkResponse, ApiResponse, getSchemaPath } from '@nestjs/swagger';
import { ErrorCode } from './errors.js';

/** `{items: [Model], nextCursor, total?}` in the OpenAPI document. */
export function ApiPage(model: Type<unknown>) {
  return applyDecorators(
    ApiExtraModels(model),
    ApiOkResponse({
      description: 'A page, newest first',
      schema: {
        type: 'object',
        required: ['items', 'nextCursor'],
        properties: {
          items: { type: 'array', items: { $ref: getSchemaPath(model) } },
          nextCursor: { type: 'string', nullable: true, example: null },
          total: { type: 'integer', description: 'with ?includeTotal=true' },
        },
      },
    }),
  );
}

/** Documents the error answers a route can give, each with an example body. */
export function ApiErrors(...codes: ErrorCode[]) {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) byStatus.set(ErrorCode[code], [...(byStatus.get(ErrorCode[code]) ?? []), code]);
  return applyDecorators(
    ...[...byStatus].map(([status, sameStatus]) =>
      ApiResponse({
        status,
        description: sameStatus.join(' or '),
        schema: {
          type: 'object',
          properties: {
            statusCode: { type: 'integer', example: status },
            code: { type: 'string', enum: sameStatus, example: sameStatus[0] },
            message: { type: 'string' },
          },
        },
      }),
    ),
  );
}
