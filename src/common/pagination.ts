import type { EntityManager, FilterQuery } from '@mikro-orm/postgresql';
import type { EntityName } from '@mikro-orm/core';
import { ApiPropertyOptional } from '@nestjs/swagger';
import { Transform, Type } from 'class-transformer';
import { IsBoolean, IsInt, IsOptional, IsString, Max, MaxLength, Min } from 'class-validator';
import { DomainException } from './errors.js';

export class ListQueryDto {
  @ApiPropertyOptional({ minimum: 1, maximum: 200, default: 50 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(200)
  limit?: number;

  @ApiPropertyOptional({ description: 'nextCursor of the previous page' })
  @IsOptional()
  @IsString()
  @MaxLength(200)
  cursor?: string;

  @ApiPropertyOptional({ description: 'add the number of matching items as `total`' })
  @IsOptional()
  @Transform(({ value }) => (value === 'true' ? true : value === 'false' ? false : value))
  @IsBoolean()
  includeTotal?: boolean;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
  total?: number;
}

interface Cursor {
  createdAt: Date;
  id: string;
}

export function encodeCursor(row: { createdAt: Date; id: string }): string {
  return Buffer.from(JSON.stringify([row.createdAt.toISOString(), row.id])).toString('base64url');
}

export function decodeCursor(raw: string): Cursor {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as [string, string];
    const date = new Date(createdAt);
    if (Number.isNaN(date.getTime()) || typeof id !== 'string' || !/^[0-9a-f-]{36}$/i.test(id)) throw new Error();
    return { createdAt: date, id };
  } catch {
    throw DomainException.field('cursor', 'is not a cursor this API issued');
  }
}

/**
 * Keyset pagination, newest first, over `(created_at, id)`: a page costs one index range
 * however deep it is, and rows inserted meanwhile never shift a page.
 */
export async function paginate<T extends { createdAt: Date; id: string }, R>(
  em: EntityManager,
  entity: EntityName<T>,
  where: FilterQuery<T>,
  query: ListQueryDto,
  present: (row: T) => R,
): Promise<Page<R>> {
  const limit = query.limit ?? 50;
  const cursor = query.cursor ? decodeCursor(query.cursor) : null;
  const keyset = cursor
    ? { $or: [{ createdAt: { $lt: cursor.createdAt } }, { createdAt: cursor.createdAt, id: { $lt: cursor.id } }] }
    : {};
  const rows = (await em.find(entity, { $and: [where, keyset] } as FilterQuery<T>, {
    orderBy: { createdAt: 'desc', id: 'desc' } as never,
    limit: limit + 1,
  })) as T[];
  const items = rows.slice(0, limit);
  const page: Page<R> = {
    items: items.map(present),
    nextCursor: rows.length > limit ? encodeCursor(items[items.length - 1]) : null,
  };
  if (query.includeTotal) page.total = await em.count(entity, where);
  return page;
}
