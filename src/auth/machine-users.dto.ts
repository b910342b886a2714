import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, ArrayUnique, IsArray, IsBoolean, IsString, Matches } from 'class-validator';
import { IsName, IsOptionalNotNull } from '../common/validators.js';

const USERNAME_PATTERN = /^[A-Za-z0-9._@-]{1,100}$/;
const ROLE_PATTERN = /^[A-Za-z0-9._:-]{1,100}$/;

class MachineUserFields {
  @IsOptionalNotNull()
  @ApiPropertyOptional({ example: true, default: true })
  @IsBoolean()
  enabled?: boolean;

  @IsOptionalNotNull()
  @ApiPropertyOptional({ example: ['backend'], default: ['backend'], description: 'backend, operator or free-form' })
  @IsArray()
  @ArrayMaxSize(50)
  @ArrayUnique()
  @IsString({ each: true })
  @Matches(ROLE_PATTERN, { each: true, message: 'each role must be 1–100 characters of A-Z a-z 0-9 . _ : -' })
  roles?: string[];
}

export class CreateMachineUserDto extends MachineUserFields {
  @IsName('Payment Processing Service')
  name!: string;

  @ApiProperty({ example: 'payment-service', pattern: USERNAME_PATTERN.source })
  @IsString()
  @Matches(USERNAME_PATTERN, { message: 'must be 1–100 characters of A-Z a-z 0-9 . _ @ -' })
  username!: string;
}

export class UpdateMachineUserDto extends MachineUserFields {
  @IsOptionalNotNull()
  @IsName('Payment Processing Service', true)
  name?: string;
}

export class MachineUserResponse {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ format: 'uuid' }) tenantId!: string;
  @ApiProperty({ example: 'Payment Processing Service' }) name!: string;
  @ApiProperty({ example: 'payment-service' }) username!: string;
  @ApiProperty({ example: true }) enabled!: boolean;
  @ApiProperty({ example: ['backend'] }) roles!: string[];
  @ApiProperty({ example: '2025-12-01T10:00:00.000Z' }) createdAt!: string;
}

export class CreatedMachineUserResponse {
  @ApiProperty({ example: 'sy_4bKq1x0T0bVxD3wY7kP2mS9nQ6rH8jL5cF1aZ3eU7iO', description: 'shown once' })
  generatedToken!: string;

  @ApiProperty({ format: 'uuid' }) tokenId!: string;
  @ApiProperty({ type: MachineUserResponse }) machineUser!: MachineUserResponse;
}

export class IssuedTokenResponse {
  @ApiProperty({ example: 'sy_4bKq1x0T0bVxD3wY7kP2mS9nQ6rH8jL5cF1aZ3eU7iO', description: 'shown once' })
  generatedToken!: string;

  @ApiProperty({ format: 'uuid' }) tokenId!: string;
  @ApiProperty({ example: 'sy_4bKq1x0' }) prefix!: string;
  @ApiProperty({ example: '2025-12-01T10:00:00.000Z' }) createdAt!: string;
}

export class TokenResponse {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ example: 'sy_4bKq1x0' }) prefix!: string;
  @ApiProperty({ example: '2025-12-01T10:00:00.000Z' }) createdAt!: string;
  @ApiProperty({ example: null, nullable: true, type: String }) lastUsedAt!: string | null;
  @ApiProperty({ example: null, nullable: true, type: String }) revokedAt!: string | null;
}
