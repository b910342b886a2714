import { type ArgumentMetadata, Injectable, ValidationPipe, type ValidationError } from '@nestjs/common';
import { DomainException, type FieldError } from './errors.js';

/** Flattens class-validator's tree into `[{field: "steps[0].name", message}]`. */
export function flattenValidationErrors(errors: ValidationError[], parent = ''): FieldError[] {
  const flat: FieldError[] = [];
  for (const error of errors) {
    const field = /^\d+$/.test(error.property)
      ? `${parent}[${error.property}]`
      : parent
        ? `${parent}.${error.property}`
        : error.property;
    for (const message of Object.values(error.constraints ?? {})) {
      flat.push({ field, message: message.replace(/^property \S+ should not exist$/, 'is not allowed') });
    }
    flat.push(...flattenValidationErrors(error.children ?? [], field));
  }
  return flat;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The global pipe: unknown fields are errors at every depth, values are transformed into DTO
 * instances, and a body that is not a JSON object (`[]`, `"x"`, `null`, empty) is refused before
 * class-validator sees it (it would otherwise validate an array element-wise or skip a scalar).
 */
@Injectable()
export class RequestValidationPipe extends ValidationPipe {
  constructor() {
    super({
      whitelist: true,
      forbidNonWhitelisted: true,
      forbidUnknownValues: true,
      transform: true,
      validationError: { target: false, value: false },
      exceptionFactory: (errors) => DomainException.validation(flattenValidationErrors(errors)),
    });
  }

  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    const isDto = typeof metadata.metatype === 'function' && !isBuiltin(metadata.metatype);
    if (metadata.type === 'body' && isDto && !isPlainObject(value)) {
      throw DomainException.field('body', 'must be a JSON object');
    }
    if (metadata.type === 'query' && isDto && value === undefined) value = {};
    return super.transform(value, metadata);
  }
}

function isBuiltin(type: unknown): boolean {
  return [String, Boolean, Number, Array, Object].includes(type as never);
}
