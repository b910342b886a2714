import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Allow, IsArray, IsIn, IsOptional } from 'class-validator';
import { ListQueryDto } from '../common/pagination.js';
import { IsName } from '../common/validators.js';
import { EXECUTION_STATUSES, type ExecutionStatus } from './execution-state.js';

const STEPS_EXAMPLE = [
  {
    type: 'callback',
    name: 'Payment confirmed',
    auth: { type: 'MACHINE_USER', requiredRoles: ['payments'], onFail: 'ERROR' },
    condition: { type: 'JQ', expressions: ['.data.status == "confirmed"'], combinator: 'and' },
    schema: { type: 'object', required: ['status'], properties: { status: { type: 'string' } } },
    timeout: 'PT24H',
    onTimeout: 'fail',
  },
  {
    type: 'webhook',
    name: 'Complete order',
    backendId: '5f0c8a55-3f4e-4d7e-9a43-0f4b8f1f2a10',
    invocationMethod: {
      type: 'WEBHOOK',
      method: 'POST',
      headers: { RUN_ID: '{{ .run.id }}' },
      body: { order: '{{ .steps["Payment confirmed"].data }}' },
    },
  },
  { type: 'delay', name: 'Cool down', duration: 'PT10M' },
];

export class SaveFlowDto {
  @IsName('Order processing')
  name!: string;

  @ApiProperty({
    description: '1–100 steps: callback, webhook or delay (see SPEC §3); unknown fields are refused at every depth',
    example: STEPS_EXAMPLE,
    type: 'array',
    items: { type: 'object' },
  })
  @IsArray()
  steps!: unknown[];
}

export class StartExecutionDto {
  @ApiPropertyOptional({ description: 'any JSON value; becomes trigger.data (default {})', example: { orderId: 42 } })
  @IsOptional()
  @Allow()
  input?: unknown;
}

export class ListExecutionsQuery extends ListQueryDto {
  @ApiPropertyOptional({ enum: EXECUTION_STATUSES })
  @IsOptional()
  @IsIn(EXECUTION_STATUSES)
  status?: ExecutionStatus;
}

export class FlowResponse {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ format: 'uuid' }) applicationId!: string;
  @ApiProperty({ example: 'Order processing' }) name!: string;
  @ApiProperty({ example: 1 }) version!: number;
  @ApiProperty({
    description: 'the steps as saved; callback steps add triggerId and activationUrl',
    example: [
      {
        ...STEPS_EXAMPLE[0],
        triggerId: '0b8f6a1e-5c2d-4f4a-9a39-8d1b2c3d4e5f',
        activationUrl:
          'https://switchyard.example.com/api/automation/flow/7d9f…/trigger/0b8f6a1e-5c2d-4f4a-9a39-8d1b2c3d4e5f/activate',
      },
    ],
    type: 'array',
    items: { type: 'object' },
  })
  steps!: unknown[];
  @ApiProperty({ example: '2025-12-01T10:00:00.000Z' }) createdAt!: string;
  @ApiProperty({ example: '2025-12-01T10:00:00.000Z' }) updatedAt!: string;
}

export class WaitingAtResponse {
  @ApiProperty({ example: 'Payment confirmed' }) step!: string;
  @ApiProperty({ format: 'uuid' }) triggerId!: string;
  @ApiProperty({ example: '2025-12-01T10:00:00.000Z' }) since!: string;
  @ApiProperty({ nullable: true, type: String, example: '2025-12-02T10:00:00.000Z' }) deadline!: string | null;
}

export class HistoryEntryResponse {
  @ApiProperty({ example: '2025-12-01T10:00:00.000Z' }) at!: string;
  @ApiProperty({ example: 'activated' }) type!: string;
  @ApiProperty({ nullable: true, type: String, example: 'Payment confirmed' }) step!: string | null;
  @ApiProperty({ nullable: true, type: Object }) detail!: Record<string, unknown> | null;
}

export class ExecutionResponse {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ format: 'uuid' }) flowId!: string;
  @ApiProperty({ example: 1 }) flowVersion!: number;
  @ApiProperty({ enum: EXECUTION_STATUSES }) status!: ExecutionStatus;
  @ApiProperty({ nullable: true, type: String, example: 'Payment confirmed' }) currentStep!: string | null;
  @ApiProperty({ nullable: true, type: WaitingAtResponse }) waitingAt!: WaitingAtResponse | null;
  @ApiProperty({ type: Object, description: 'trigger data, each finished step’s output, callback URLs' })
  context!: Record<string, unknown>;
  @ApiProperty({ type: [HistoryEntryResponse] }) history!: HistoryEntryResponse[];
  @ApiProperty({ example: '2025-12-01T10:00:00.000Z' }) createdAt!: string;
  @ApiProperty({ example: '2025-12-01T10:00:00.000Z' }) updatedAt!: string;
}
