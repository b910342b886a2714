import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, IsArray, IsBoolean, IsOptional, IsString, MaxLength, ValidateIf } from 'class-validator';
import { MAX_CALLBACK_URL_LENGTH } from '../http/address-guard.js';
import { IsName } from '../common/validators.js';
import { MAX_RUN_KEYS } from './run-keys.js';

export const MAX_DESCRIPTION_LENGTH = 2000;

/**
 * For PATCH fields whose column is NOT NULL: absent means "leave as is", but `null` must be a
 * validation error rather than reach the database (IsOptional would wave it through).
 */
const UnlessAbsent = () => ValidateIf((_object: object, value: unknown) => value !== undefined);

const CALLBACK_URL_DOC = {
  example: 'https://payments.example.com/switchyard/webhook',
  maxLength: MAX_CALLBACK_URL_LENGTH,
  description: 'https:// (http:// only with ALLOW_HTTP_CALLBACKS); no private addresses unless CALLBACK_ALLOWED_HOSTS',
};
const RUN_KEYS_DOC = {
  example: ['orders.sync', 'billing:nightly'],
  maxItems: MAX_RUN_KEYS,
  uniqueItems: true,
  items: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,100}$' },
  description: 'cron triggers with one of these run keys deliver to this backend',
};
const DESCRIPTION_DOC = {
  example: 'Settles card payments',
  nullable: true,
  type: String,
  maxLength: MAX_DESCRIPTION_LENGTH,
};

export class RegisterBackendDto {
  @IsName('payment-service')
  name!: string;

  @ApiProperty(CALLBACK_URL_DOC)
  @IsString()
  @MaxLength(MAX_CALLBACK_URL_LENGTH)
  callbackUrl!: string;

  @ApiPropertyOptional(DESCRIPTION_DOC)
  @IsOptional()
  @IsString()
  @MaxLength(MAX_DESCRIPTION_LENGTH)
  description?: string | null;

  // Entries are checked by runKeyErrors in the service, which can name their index.
  @ApiPropertyOptional({ ...RUN_KEYS_DOC, default: [] })
  @UnlessAbsent()
  @IsArray()
  @ArrayMaxSize(MAX_RUN_KEYS)
  runKeys?: string[];
}

export class UpdateBackendDto {
  @UnlessAbsent()
  @IsName('payment-service', true)
  name?: string;

  @ApiPropertyOptional(CALLBACK_URL_DOC)
  @UnlessAbsent()
  @IsString()
  @MaxLength(MAX_CALLBACK_URL_LENGTH)
  callbackUrl?: string;

  @ApiPropertyOptional(DESCRIPTION_DOC)
  @IsOptional()
  @IsString()
  @MaxLength(MAX_DESCRIPTION_LENGTH)
  description?: string | null;

  @ApiPropertyOptional(RUN_KEYS_DOC)
  @UnlessAbsent()
  @IsArray()
  @ArrayMaxSize(MAX_RUN_KEYS)
  runKeys?: string[];

  @ApiPropertyOptional({ example: true, description: 'true re-queues the PARKED deliveries of this backend' })
  @UnlessAbsent()
  @IsBoolean()
  enabled?: boolean;
}

export class BackendResponse {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ example: 'payment-service' }) name!: string;
  @ApiProperty({ example: 'https://payments.example.com/switchyard/webhook' }) callbackUrl!: string;
  @ApiProperty({ example: 'Settles card payments', nullable: true, type: String }) description!: string | null;
  @ApiProperty({ example: ['orders.sync', 'billing:nightly'] }) runKeys!: string[];
  @ApiProperty({ example: true }) enabled!: boolean;
  @ApiProperty({ format: 'uuid', description: 'the machine user that registered it' }) machineUserId!: string;
  @ApiProperty({ example: '2025-12-01T10:00:00.000Z' }) createdAt!: string;
}

export class RegisteredBackendResponse extends BackendResponse {
  @ApiProperty({
    example: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwv6yPk5Ebk9E=',
    description: 'shown once, on the first registration only',
  })
  signingSecret!: string;
}

export class BackendSigningSecretResponse {
  @ApiProperty({
    example: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwv6yPk5Ebk9E=',
    description: 'shown once; the previous secret keeps signing alongside for 24 h',
  })
  signingSecret!: string;
}
