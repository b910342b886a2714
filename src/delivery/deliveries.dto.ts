import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsISO8601, IsOptional, IsUUID } from 'class-validator';
import { ListQueryDto } from '../common/pagination.js';
import { DELIVERY_STATUSES, type DeliveryStatus } from './delivery.types.js';

export class ListDeliveriesQuery extends ListQueryDto {
  @ApiPropertyOptional({ format: 'uuid' })
  @IsOptional()
  @IsUUID()
  backendId?: string;

  @ApiPropertyOptional({ enum: DELIVERY_STATUSES })
  @IsOptional()
  @IsIn(DELIVERY_STATUSES)
  status?: DeliveryStatus;

  @ApiPropertyOptional({ example: '2025-12-01T00:00:00Z', description: 'created at or after' })
  @IsOptional()
  @IsISO8601({ strict: true })
  since?: string;
}

export class RecoverDto {
  @ApiProperty({ example: '2025-12-01T00:00:00Z', description: 'replay DEAD and PARKED deliveries created since' })
  @IsISO8601({ strict: true })
  since!: string;
}

export class DeliveryOriginResponse {
  @ApiProperty({ enum: ['trigger_run', 'execution'] }) type!: string;
  @ApiProperty({ format: 'uuid' }) id!: string;
}

export class DeliveryResponse {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ example: 'msg_2Qh7hQw9bYk1mT4sLr8vXe' }) webhookId!: string;
  @ApiProperty({ format: 'uuid', nullable: true, type: String }) backendId!: string | null;
  @ApiProperty({ format: 'uuid', nullable: true, type: String }) applicationId!: string | null;
  @ApiProperty({ example: 'https://payment.example.com/triggers/callback' }) url!: string;
  @ApiProperty({ enum: DELIVERY_STATUSES }) status!: DeliveryStatus;
  @ApiProperty({ example: 1 }) attempts!: number;
  @ApiProperty({ nullable: true, type: String, example: null }) nextAttemptAt!: string | null;
  @ApiProperty({ nullable: true, type: Number, example: 200 }) lastStatusCode!: number | null;
  @ApiProperty({ nullable: true, type: String, example: null }) lastError!: string | null;
  @ApiProperty({ type: DeliveryOriginResponse }) origin!: DeliveryOriginResponse;
  @ApiProperty({ example: '2025-12-01T10:00:00.000Z' }) createdAt!: string;
  @ApiProperty({ nullable: true, type: String }) finishedAt!: string | null;
}

export class AttemptLogEntry {
  @ApiProperty({ example: '2025-12-01T10:00:00.120Z' }) at!: string;
  @ApiProperty({ nullable: true, type: Number, example: 200 }) statusCode!: number | null;
  @ApiProperty({ example: 42 }) durationMs!: number;
  @ApiProperty({ nullable: true, type: String, example: '{"status":"success"}' }) responseExcerpt!: string | null;
  @ApiProperty({ nullable: true, type: String, example: null }) error!: string | null;
}

export class DeliveryDetailResponse extends DeliveryResponse {
  @ApiProperty({ type: [AttemptLogEntry] }) attemptLog!: AttemptLogEntry[];
}

export class RecoverResponse {
  @ApiProperty({ example: 12 }) count!: number;
}
