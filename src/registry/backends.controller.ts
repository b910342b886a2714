import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query, Res } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { CurrentPrincipal, MachineUser } from '../auth/auth.decorators.js';
import { type MachinePrincipal, ROLE_BACKEND, ROLE_OPERATOR } from '../auth/principal.js';
import { ApiErrors, ApiPage } from '../common/openapi.js';
import { ListQueryDto } from '../common/pagination.js';
import { UuidParam } from '../common/uuid-param.pipe.js';
import {
  BackendResponse,
  BackendSigningSecretResponse,
  RegisteredBackendResponse,
  RegisterBackendDto,
  UpdateBackendDto,
} from './backends.dto.js';
import { BackendsService } from './backends.service.js';

// @MachineUser guarantees the principal is a MachinePrincipal, hence the narrower parameter type.
@ApiTags('backends')
@ApiBearerAuth()
@ApiErrors('UNAUTHENTICATED', 'FORBIDDEN')
@MachineUser(ROLE_BACKEND, ROLE_OPERATOR)
@Controller('api/machine')
export class BackendsController {
  constructor(private readonly backends: BackendsService) {}

  @Post('register-backend')
  @ApiOperation({
    summary: 'Register a backend, or update and re-enable the one of the same name (idempotent, for every boot)',
  })
  @ApiCreatedResponse({ type: RegisteredBackendResponse, description: 'first registration; signingSecret shown once' })
  @ApiOkResponse({ type: BackendResponse, description: 'this machine user already had a backend of that name' })
  @ApiErrors('VALIDATION_FAILED', 'INVALID_URL', 'CALLBACK_URL_FORBIDDEN')
  async register(
    @CurrentPrincipal() principal: MachinePrincipal,
    @Body() body: RegisterBackendDto,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<BackendResponse | RegisteredBackendResponse> {
    const { created, backend } = await this.backends.register(principal, body);
    void reply.status(created ? 201 : 200);
    return backend;
  }

  @Get('backends')
  @ApiOperation({ summary: 'List backends: an operator sees the whole tenant, a backend user its own' })
  @ApiPage(BackendResponse)
  @ApiErrors('VALIDATION_FAILED')
  list(@CurrentPrincipal() principal: MachinePrincipal, @Query() query: ListQueryDto) {
    return this.backends.list(principal, query);
  }

  @Get('backends/:id')
  @ApiOperation({ summary: 'Get a backend' })
  @ApiOkResponse({ type: BackendResponse })
  @ApiErrors('NOT_FOUND')
  get(@CurrentPrincipal() principal: MachinePrincipal, @Param('id', UuidParam) id: string) {
    return this.backends.get(principal, id);
  }

  @Patch('backends/:id')
  @ApiOperation({ summary: 'Change a backend; enabling it re-queues its PARKED deliveries' })
  @ApiOkResponse({ type: BackendResponse })
  @ApiErrors('VALIDATION_FAILED', 'INVALID_URL', 'CALLBACK_URL_FORBIDDEN', 'NOT_FOUND', 'CONFLICT')
  update(
    @CurrentPrincipal() principal: MachinePrincipal,
    @Param('id', UuidParam) id: string,
    @Body() body: UpdateBackendDto,
  ) {
    return this.backends.update(principal, id, body);
  }

  @Delete('backends/:id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Delete a backend and its signing secrets' })
  @ApiNoContentResponse()
  @ApiErrors('NOT_FOUND')
  remove(@CurrentPrincipal() principal: MachinePrincipal, @Param('id', UuidParam) id: string) {
    return this.backends.remove(principal, id);
  }

  @Post('backends/:id/rotate-secret')
  @HttpCode(200)
  @ApiOperation({ summary: 'Issue a new signing secret; the previous one keeps signing alongside for 24 h' })
  @ApiOkResponse({ type: BackendSigningSecretResponse })
  @ApiErrors('NOT_FOUND')
  rotateSecret(@CurrentPrincipal() principal: MachinePrincipal, @Param('id', UuidParam) id: string) {
    return this.backends.rotateSecret(principal, id);
  }
}
