import { ApiProperty } from '@nestjs/swagger';
import { IsName, IsSlug } from '../common/validators.js';

export class CreateTenantDto {
  @IsName('Customer A')
  name!: string;

  @IsSlug('customer-a')
  slug!: string;
}

export class CreateProjectDto {
  @IsName('E-commerce Platform')
  name!: string;

  @IsSlug('ecommerce')
  slug!: string;
}

export class CreateApplicationDto {
  @IsName('Payment App')
  name!: string;

  @IsSlug('payment-app')
  slug!: string;
}

export class TenantResponse {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ example: 'Customer A' }) name!: string;
  @ApiProperty({ example: 'customer-a' }) slug!: string;
  @ApiProperty({ example: '2025-12-01T10:00:00.000Z' }) createdAt!: string;
}

export class ProjectResponse {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ format: 'uuid' }) tenantId!: string;
  @ApiProperty({ example: 'E-commerce Platform' }) name!: string;
  @ApiProperty({ example: 'ecommerce' }) slug!: string;
  @ApiProperty({ example: '2025-12-01T10:00:00.000Z' }) createdAt!: string;
}

export class ApplicationResponse {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ format: 'uuid' }) projectId!: string;
  @ApiProperty({ format: 'uuid' }) tenantId!: string;
  @ApiProperty({ example: 'Payment App' }) name!: string;
  @ApiProperty({ example: 'payment-app' }) slug!: string;
  @ApiProperty({ example: '2025-12-01T10:00:00.000Z' }) createdAt!: string;
}

export class CreatedApplicationResponse extends ApplicationResponse {
  @ApiProperty({ example: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', description: 'shown once' })
  signingSecret!: string;
}

export class SigningSecretResponse {
  @ApiProperty({ example: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', description: 'shown once' })
  signingSecret!: string;
}
