import { ConnectionException, DeadlockException, LockWaitTimeoutException } from '@mikro-orm/core';

/**
 * SQLSTATEs are looked up by code as well as by MikroORM exception class: raw SQL (`em.execute`) can surface a
 * driver error that MikroORM did not convert (a plain pg `DatabaseError`, or a `DriverException` with only the
 * code), and callers sometimes wrap it (`cause`).
 */
export const UNIQUE_VIOLATION = new Set(['23505']);
/** Deadlock, lock not available (NOWAIT or lock_timeout), statement timeout or cancel: busy, worth retrying. */
const BUSY = new Set(['40P01', '55P03', '57014']);

const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  '57P01',
  '57P03',
  '08006',
  '08001',
]);

/**
 * The database could not do the work right now (unreachable, the connection was lost, or busy): nothing about
 * the request or the row was wrong, and the same work is worth retrying shortly. Whatever ran in the
 * transaction was rolled back.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  return (
    error instanceof ConnectionException ||
    error instanceof LockWaitTimeoutException ||
    error instanceof DeadlockException ||
    hasSqlState(error, BUSY) ||
    isConnectionFailure(error)
  );
}

export function hasSqlState(error: unknown, codes: ReadonlySet<string>): boolean {
  let current: unknown = error;
  for (let depth = 0; current && depth < 4; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && codes.has(code)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

function isConnectionFailure(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; current && depth < 4; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && CONNECTION_ERROR_CODES.has(code)) return true;
    const message = (current as { message?: unknown }).message;
    if (
      typeof message === 'string' &&
      /Connection terminated|timeout exceeded when trying to connect|not queryable/i.test(message)
    ) {
      return true;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}
