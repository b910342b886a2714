/** Stable error codes of the public contract (SPEC §3, §4). Clients switch on these. */
export const ErrorCode = {
  VALIDATION_FAILED: 400,
  INVALID_JSON: 400,
  INVALID_CRON: 400,
  INVALID_TIMEZONE: 400,
  INVALID_URL: 400,
  CALLBACK_URL_FORBIDDEN: 400,
  INVALID_EXPRESSION: 400,
  INVALID_SCHEMA: 400,
  INVALID_DURATION: 400,
  INVALID_PAYLOAD: 400,
  EXECUTION_REQUIRED: 400,
  UNAUTHENTICATED: 401,
  CALLBACK_AUTH_FAILED: 401,
  FORBIDDEN: 403,
  MISSING_ROLE: 403,
  NOT_FOUND: 404,
  TRIGGER_NOT_FOUND: 404,
  EXECUTION_NOT_FOUND: 404,
  NO_WAITING_EXECUTION: 404,
  CONFLICT: 409,
  EXECUTION_NOT_WAITING: 409,
  EXECUTION_FINISHED: 409,
  PAYLOAD_TOO_LARGE: 413,
  RATE_LIMITED: 429,
  INTERNAL_ERROR: 500,
  UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof ErrorCode;

export interface FieldError {
  field: string;
  message: string;
}

/**
 * The one exception services throw. It carries a contract code; the global filter turns it
 * into `{statusCode, code, message, ...details}`. Services never throw HttpException.
 */
export class DomainException extends Error {
  readonly statusCode: number;

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'DomainException';
    this.statusCode = ErrorCode[code];
  }

  static notFound(what = 'Resource'): DomainException {
    return new DomainException('NOT_FOUND', `${what} not found`);
  }

  static validation(errors: FieldError[]): DomainException {
    const summary = errors.map((error) => `${error.field}: ${error.message}`).join('; ');
    return new DomainException('VALIDATION_FAILED', `Validation failed: ${summary}`, { errors });
  }

  static field(field: string, message: string): DomainException {
    return DomainException.validation([{ field, message }]);
  }
}
