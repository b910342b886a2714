import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsObject, IsOptional, IsString, MaxLength } from 'class-validator';

/** The GraphQL-over-HTTP POST body. */
export class GraphqlRequestDto {
  @ApiProperty({
    description: 'A GraphQL document',
    example:
      'mutation Create($tenantId: ID!) { createMachineUserWithCredentials(tenantId: $tenantId, input: ' +
      '{name: "Payment Processing Service", username: "payment-service", hashedKey: "__GENERATE_TOKEN__", ' +
      'enabled: true}) { generatedToken machineUser { id username } } }',
  })
  @IsString()
  @MaxLength(100_000)
  query!: string;

  @ApiPropertyOptional({
    type: 'object',
    additionalProperties: true,
    nullable: true,
    example: { tenantId: '0b5f7c1e-8d7a-4f8e-9a51-3c2d1e0f9a8b' },
  })
  @IsOptional()
  @IsObject()
  variables?: Record<string, unknown> | null;

  @ApiPropertyOptional({ type: String, nullable: true, example: 'Create' })
  @IsOptional()
  @IsString()
  @MaxLength(200)
  operationName?: string | null;

  // GraphQL-over-HTTP defines `extensions` as a standard request field and some clients
  // always send it; accepted so they are not refused as "unknown field", and ignored.
  @ApiPropertyOptional({ type: 'object', additionalProperties: true, nullable: true, description: 'ignored' })
  @IsOptional()
  @IsObject()
  extensions?: Record<string, unknown> | null;
}

export class GraphqlErrorResponse {
  @ApiProperty({ example: 'Tenant not found' }) message!: string;
  @ApiPropertyOptional({ example: [{ line: 1, column: 12 }] }) locations?: { line: number; column: number }[];
  @ApiPropertyOptional({ example: ['createMachineUserWithCredentials'] }) path?: (string | number)[];
  @ApiProperty({
    example: { code: 'NOT_FOUND' },
    description: 'code: a §3 error code; VALIDATION_FAILED errors add `errors: [{field, message}]`',
  })
  extensions!: Record<string, unknown>;
}

export class GraphqlResponse {
  @ApiPropertyOptional({
    type: 'object',
    additionalProperties: true,
    nullable: true,
    example: {
      createMachineUserWithCredentials: {
        generatedToken: 'sy_4bKq1x0T0bVxD3wY7kP2mS9nQ6rH8jL5cF1aZ3eU7iO',
        machineUser: { id: '5a0f4f0e-1c7e-4c51-9d0a-2b8f3e6d7c91', username: 'payment-service' },
      },
    },
  })
  data?: Record<string, unknown> | null;

  @ApiPropertyOptional({ type: [GraphqlErrorResponse] })
  errors?: GraphqlErrorResponse[];
}
