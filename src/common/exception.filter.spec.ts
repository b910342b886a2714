import { Logger } from '@nestjs/common';
import { DeadlockException, DriverException, UniqueConstraintViolationException } from '@mikro-orm/core';
import pg from 'pg';
import { DomainException } from './errors.js';
import { AllExceptionsFilter } from './exception.filter.js';

/** A driver error as pg raises it for a failed statement (what em.execute surfaces for raw SQL). */
function pgError(code: string, message = `failed with ${code}`): pg.DatabaseError {
  const error = new pg.DatabaseError(message, 0, 'error');
  error.code = code;
  return error;
}

describe('AllExceptionsFilter.toErrorBody', () => {
  const filter = new AllExceptionsFilter();
  // The filter logs unknown and busy errors; the assertions here are about the answer (vitest isolates files).
  beforeAll(() => Logger.overrideLogger(false));

  describe('unique violation (23505) is 409 CONFLICT', () => {
    it.each([
      ['a raw pg DatabaseError', pgError('23505')],
      ['a pg error wrapped as cause', new Error('insert failed', { cause: pgError('23505') })],
      ['a pg error wrapped twice', new Error('outer', { cause: new Error('inner', { cause: pgError('23505') }) })],
      ['MikroORM’s UniqueConstraintViolationException', new UniqueConstraintViolationException(pgError('23505'))],
      ['a MikroORM DriverException carrying the code', new DriverException(pgError('23505'))],
    ])('%s', (_name, error) => {
      expect(filter.toErrorBody(error)).toEqual({
        body: { statusCode: 409, code: 'CONFLICT', message: expect.any(String) },
        headers: {},
      });
    });
  });

  describe('deadlock, lock not available and statement timeout are 503 UNAVAILABLE with Retry-After', () => {
    it.each([
      ['deadlock (40P01), raw', pgError('40P01')],
      ['lock not available (55P03), raw', pgError('55P03')],
      ['statement timeout (57014), raw', pgError('57014', 'canceling statement due to statement timeout')],
      ['statement timeout as MikroORM raises it from em.execute', new DriverException(pgError('57014'))],
      ['lock not available, wrapped as cause', new Error('claim failed', { cause: pgError('55P03') })],
      ['MikroORM’s DeadlockException', new DeadlockException(pgError('40P01'))],
    ])('%s', (_name, error) => {
      expect(filter.toErrorBody(error)).toEqual({
        body: { statusCode: 503, code: 'UNAVAILABLE', message: expect.any(String) },
        headers: { 'retry-after': '1' },
      });
    });
  });

  it('leaves other SQLSTATEs a 500 with an error id and no driver detail', () => {
    const { body, headers } = filter.toErrorBody(pgError('23503', 'violates foreign key constraint "secret_fk"'));
    expect(body).toEqual({
      statusCode: 500,
      code: 'INTERNAL_ERROR',
      message: `Internal error; quote error id ${body.errorId as string}`,
      errorId: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
    expect(headers).toEqual({});
  });

  it('does not mistake a non-database code for a SQLSTATE', () => {
    // Only the listed codes count, whatever else happens to be five characters long.
    expect(filter.toErrorBody(Object.assign(new Error('x'), { code: '23506' })).body.statusCode).toBe(500);
  });

  it('passes a DomainException through with its details and headers', () => {
    const error = new DomainException('CONFLICT', 'Delivery is PENDING', {}, { 'x-why': 'state' });
    expect(filter.toErrorBody(error)).toEqual({
      body: { statusCode: 409, code: 'CONFLICT', message: 'Delivery is PENDING' },
      headers: { 'x-why': 'state' },
    });
  });
});
