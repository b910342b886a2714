import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, IsArray, IsBoolean, IsInt, IsOptional, IsString, Max, MaxLength, Min } from 'class-validator';
import { MAX_CALLBACK_URL_LENGTH } from '../http/address-guard.js';
import { IsName, IsOptionalNotNull } from '../common/validators.js';
import { MAX_RUN_KEYS } from './run-keys.js';

export const MAX_DESCRIPTION_LENGTH = 2000;
/** Bounds of a backend's own attempt timeout (the same as DELIVERY_TIMEOUT_MS's, and the column's check). */
export const MIN_TIMEOUT_MS = 100;
export const MAX_TIMEOUT_MS = 300_000;

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
const TIMEOUT_DOC = {
  example: 5000,
  nullable: true,
  type: Number,
  minimum: MIN_TIMEOUT_MS,
  maximum: MAX_TIMEOUT_MS,
  description: 'per-attempt timeout in milliseconds; null: the server default (DELIVERY_TIMEOUT_MS)',
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
  @IsOptionalNotNull()
  @IsArray()
  @ArrayMaxSize(MAX_RUN_KEYS)
  runKeys?: string[];

  @ApiPropertyOptional(TIMEOUT_DOC)
  @IsOptional()
  @IsInt()
  @Min(MIN_TIMEOUT_MS)
  @Max(MAX_TIMEOUT_MS)
  timeoutMs?: number | null;
}

export class UpdateBackendDto {
  @IsOptionalNotNull()
  @IsName('payment-service', true)
  name?: string;

  @ApiPropertyOptional(CALLBACK_URL_DOC)
  @IsOptionalNotNull()
  @IsString()
  @MaxLength(MAX_CALLBACK_URL_LENGTH)
  callbackUrl?: string;

  @ApiPropertyOptional(DESCRIPTION_DOC)
  @IsOptional()
  @IsString()
  @MaxLength(MAX_DESCRIPTION_LENGTH)
  description?: string | null;

  @ApiPropertyOptional(RUN_KEYS_DOC)
  @IsOptionalNotNull()
  @IsArray()
  @ArrayMaxSize(MAX_RUN_KEYS)
  runKeys?: string[];

  @ApiPropertyOptional({ example: true, description: 'true re-queues the PARKED deliveries of this backend' })
  @IsOptionalNotNull()
  @IsBoolean()
  enabled?: boolean;

  @ApiPropertyOptional(TIMEOUT_DOC)
  @IsOptional()
  @IsInt()
  @Min(MIN_TIMEOUT_MS)
  @Max(MAX_TIMEOUT_MS)
  timeoutMs?: number | null;
}

export class BackendResponse {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ example: 'payment-service' }) name!: string;
  @ApiProperty({ example: 'https://payments.example.com/switchyard/webhook' }) callbackUrl!: string;
  @ApiProperty({ example: 'Settles card payments', nullable: true, type: String }) description!: string | null;
  @ApiProperty({ example: ['orders.sync', 'billing:nightly'] }) runKeys!: string[];
  @ApiProperty({ example: true }) enabled!: boolean;
  @ApiProperty({ ...TIMEOUT_DOC, example: null }) timeoutMs!: number | null;
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
