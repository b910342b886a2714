import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsBoolean, IsIn, IsOptional, IsString, IsUUID, MaxLength } from 'class-validator';
import { IsName, IsOptionalNotNull, IsRunKey } from '../common/validators.js';
import { MISFIRE_POLICIES, type MisfirePolicy } from './triggers.entities.js';

export class CreateTriggerDto {
  @IsName('Hourly Payment Processing')
  name!: string;

  @ApiProperty({
    example: '0 * * * *',
    description: '5 fields, 6 (seconds first) or @yearly @monthly @weekly @daily @hourly',
  })
  @IsString()
  @MaxLength(200)
  cronExpression!: string;

  @ApiPropertyOptional({ example: 'Europe/Berlin', default: 'UTC' })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  timezone?: string;

  @ApiProperty({ example: 'hourly-payment', pattern: '^[A-Za-z0-9._:-]{1,100}$' })
  @IsRunKey()
  runKey!: string;

  @ApiPropertyOptional({ default: true })
  @IsOptional()
  @IsBoolean()
  enabled?: boolean;

  @ApiPropertyOptional({ format: 'uuid', description: 'deliver to this backend only' })
  @IsOptional()
  @IsUUID()
  backendId?: string | null;

  @ApiPropertyOptional({ format: 'uuid', description: 'start this flow instead of delivering' })
  @IsOptional()
  @IsUUID()
  flowId?: string | null;

  @ApiPropertyOptional({ enum: MISFIRE_POLICIES, default: 'fire_once' })
  @IsOptional()
  @IsIn(MISFIRE_POLICIES)
  misfirePolicy?: MisfirePolicy;
}

export class UpdateTriggerDto {
  @IsOptionalNotNull()
  @IsName('Hourly Payment Processing', true)
  name?: string;

  @ApiPropertyOptional({ example: '*/30 * * * * *' })
  @IsOptionalNotNull()
  @IsString()
  @MaxLength(200)
  cronExpression?: string;

  @ApiPropertyOptional({ example: 'UTC' })
  @IsOptionalNotNull()
  @IsString()
  @MaxLength(100)
  timezone?: string;

  @ApiPropertyOptional({ example: 'hourly-payment' })
  @IsOptionalNotNull()
  @IsRunKey()
  runKey?: string;

  @ApiPropertyOptional()
  @IsOptionalNotNull()
  @IsBoolean()
  enabled?: boolean;

  @ApiPropertyOptional({ format: 'uuid', nullable: true, type: String })
  @IsOptional()
  @IsUUID()
  backendId?: string | null;

  @ApiPropertyOptional({ format: 'uuid', nullable: true, type: String })
  @IsOptional()
  @IsUUID()
  flowId?: string | null;

  @ApiPropertyOptional({ enum: MISFIRE_POLICIES })
  @IsOptionalNotNull()
  @IsIn(MISFIRE_POLICIES)
  misfirePolicy?: MisfirePolicy;
}

export class TriggerResponse {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ format: 'uuid' }) applicationId!: string;
  @ApiProperty({ example: 'Hourly Payment Processing' }) name!: string;
  @ApiProperty({ example: '0 * * * *' }) cronExpression!: string;
  @ApiProperty({ example: 'UTC' }) timezone!: string;
  @ApiProperty({ example: 'hourly-payment' }) runKey!: string;
  @ApiProperty({ example: true }) enabled!: boolean;
  @ApiProperty({ format: 'uuid', nullable: true, type: String }) backendId!: string | null;
  @ApiProperty({ format: 'uuid', nullable: true, type: String }) flowId!: string | null;
  @ApiProperty({ enum: MISFIRE_POLICIES }) misfirePolicy!: MisfirePolicy;
  @ApiProperty({
    example: '2025-12-01T11:00:00.000Z',
    nullable: true,
    type: String,
    description: 'null while disabled',
  })
  nextRunAt!: string | null;
  @ApiProperty({ example: '2025-12-01T10:00:00.000Z' }) createdAt!: string;
  @ApiProperty({ example: '2025-12-01T10:00:00.000Z' }) updatedAt!: string;
}

export class RunDeliveryResponse {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ format: 'uuid', nullable: true, type: String }) backendId!: string | null;
  @ApiProperty({ enum: ['PENDING', 'SENDING', 'SUCCEEDED', 'DEAD', 'PARKED'] }) status!: string;
  @ApiProperty({ example: 1 }) attempts!: number;
}

export const RUN_OUTCOMES = ['DELIVERED', 'PENDING', 'FAILED', 'UNROUTED', 'FLOW_STARTED'] as const;
export type RunOutcome = (typeof RUN_OUTCOMES)[number];

export class TriggerRunResponse {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ format: 'uuid' }) triggerId!: string;
  @ApiProperty({ example: '2025-12-01T10:00:00.000Z' }) scheduledFor!: string;
  @ApiProperty({ example: '2025-12-01T10:00:00.042Z' }) firedAt!: string;
  @ApiProperty({ example: false }) manual!: boolean;
  @ApiProperty({ enum: RUN_OUTCOMES }) outcome!: RunOutcome;
  @ApiProperty({ type: [RunDeliveryResponse] }) deliveries!: RunDeliveryResponse[];
  @ApiProperty({ format: 'uuid', nullable: true, type: String }) executionId!: string | null;
}
