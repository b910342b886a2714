import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import { ApiErrors, ApiPage } from '../common/openapi.js';
import { ListQueryDto } from '../common/pagination.js';
import { UuidParam } from '../common/uuid-param.pipe.js';
import { AdminOnly } from './auth.decorators.js';
import {
  CreatedMachineUserResponse,
  CreateMachineUserDto,
  IssuedTokenResponse,
  MachineUserResponse,
  TokenResponse,
  UpdateMachineUserDto,
} from './machine-users.dto.js';
import { MachineUsersService } from './machine-users.service.js';

@ApiTags('admin')
@ApiBearerAuth()
@ApiErrors('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND')
@AdminOnly()
@Controller('api')
export class MachineUsersController {
  constructor(private readonly machineUsers: MachineUsersService) {}

  @Post('tenants/:tenantId/machine-users')
  @ApiOperation({ summary: 'Create a machine user with a first token (shown once)' })
  @ApiCreatedResponse({ type: CreatedMachineUserResponse })
  @ApiErrors('VALIDATION_FAILED', 'CONFLICT')
  create(@Param('tenantId', UuidParam) tenantId: string, @Body() body: CreateMachineUserDto) {
    return this.machineUsers.create(tenantId, body);
  }

  @Get('tenants/:tenantId/machine-users')
  @ApiOperation({ summary: "List a tenant's machine users" })
  @ApiPage(MachineUserResponse)
  list(@Param('tenantId', UuidParam) tenantId: string, @Query() query: ListQueryDto) {
    return this.machineUsers.list(tenantId, query);
  }

  @Get('machine-users/:id')
  @ApiOperation({ summary: 'Get a machine user' })
  @ApiOkResponse({ type: MachineUserResponse })
  get(@Param('id', UuidParam) id: string) {
    return this.machineUsers.get(id);
  }

  @Patch('machine-users/:id')
  @ApiOperation({ summary: 'Rename, enable/disable or change the roles of a machine user' })
  @ApiOkResponse({ type: MachineUserResponse })
  @ApiErrors('VALIDATION_FAILED')
  update(@Param('id', UuidParam) id: string, @Body() body: UpdateMachineUserDto) {
    return this.machineUsers.update(id, body);
  }

  @Post('machine-users/:id/tokens')
  @ApiOperation({ summary: 'Issue another token (for rotation); shown once' })
  @ApiCreatedResponse({ type: IssuedTokenResponse })
  issueToken(@Param('id', UuidParam) id: string) {
    return this.machineUsers.issueToken(id);
  }

  @Get('machine-users/:id/tokens')
  @ApiOperation({ summary: "List a machine user's tokens, revoked ones included" })
  @ApiPage(TokenResponse)
  listTokens(@Param('id', UuidParam) id: string, @Query() query: ListQueryDto) {
    return this.machineUsers.listTokens(id, query);
  }

  @Delete('machine-users/:id/tokens/:tokenId')
  @HttpCode(204)
  @ApiOperation({ summary: 'Revoke a token' })
  @ApiNoContentResponse()
  revokeToken(@Param('id', UuidParam) id: string, @Param('tokenId', UuidParam) tokenId: string) {
    return this.machineUsers.revokeToken(id, tokenId);
  }
}
