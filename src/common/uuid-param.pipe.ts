import { Injectable, type PipeTransform } from '@nestjs/common';
import { DomainException } from './errors.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

/** A path id that is not a UUID names nothing that exists: 404, as SPEC §3 says. */
@Injectable()
export class UuidParam implements PipeTransform<string, string> {
  transform(value: string): string {
    if (!isUuid(value)) throw DomainException.notFound();
    return value.toLowerCase();
  }
}
