import { applyDecorators } from '@nestjs/common';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsString, Length, Matches, MaxLength, MinLength, ValidateIf } from 'class-validator';

/** SPEC §3: names are 1–200 characters. */
export const NAME_MAX = 200;
export const SLUG_PATTERN = /^[a-z0-9]+(-[a-z0-9]+)*$/;
export const RUN_KEY_PATTERN = /^[A-Za-z0-9._:-]{1,100}$/;

export function IsName(example: string, optional = false) {
  return applyDecorators(
    (optional ? ApiPropertyOptional : ApiProperty)({ example, minLength: 1, maxLength: NAME_MAX }),
    IsString(),
    Length(1, NAME_MAX),
  );
}

export function IsSlug(example: string) {
  return applyDecorators(
    ApiProperty({ example, pattern: SLUG_PATTERN.source, maxLength: 64 }),
    IsString(),
    MinLength(1),
    MaxLength(64),
    Matches(SLUG_PATTERN, { message: 'must be lowercase letters and digits separated by single hyphens' }),
  );
}

export function IsRunKey(options: { each?: boolean } = {}) {
  return applyDecorators(
    IsString(options),
    Matches(RUN_KEY_PATTERN, { ...options, message: 'must be 1–100 characters of A-Z a-z 0-9 . _ : -' }),
  );
}

/**
 * For optional fields whose column is NOT NULL (most PATCH fields): absent means "leave as is", but `null` is
 * validated like any other value and fails, naming the field, instead of reaching the database as a 500.
 * `IsOptional` would skip validation for null as well as for undefined.
 */
export function IsOptionalNotNull() {
  return ValidateIf((_object: object, value: unknown) => value !== undefined);
}
