import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import {
  ApiAcceptedResponse,
  ApiBearerAuth,
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import { CurrentPrincipal, MachineUser } from '../auth/auth.decorators.js';
import { type MachinePrincipal, ROLE_OPERATOR } from '../auth/principal.js';
import { ApiErrors, ApiPage } from '../common/openapi.js';
import { ListQueryDto } from '../common/pagination.js';
import { UuidParam } from '../common/uuid-param.pipe.js';
import { CreateTriggerDto, TriggerResponse, TriggerRunResponse, UpdateTriggerDto } from './triggers.dto.js';
import { TriggersService } from './triggers.service.js';

@ApiTags('cron triggers')
@ApiBearerAuth()
@ApiErrors('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND')
@MachineUser(ROLE_OPERATOR)
@Controller('api')
export class TriggersController {
  constructor(private readonly triggers: TriggersService) {}

  @Post('applications/:applicationId/triggers')
  @ApiOperation({ summary: 'Create a cron trigger' })
  @ApiCreatedResponse({ type: TriggerResponse })
  @ApiErrors('VALIDATION_FAILED', 'INVALID_CRON', 'INVALID_TIMEZONE', 'CONFLICT')
  create(
    @CurrentPrincipal() principal: MachinePrincipal,
    @Param('applicationId', UuidParam) applicationId: string,
    @Body() body: CreateTriggerDto,
  ) {
    return this.triggers.create(principal, applicationId, body);
  }

  @Get('applications/:applicationId/triggers')
  @ApiOperation({ summary: "List an application's cron triggers" })
  @ApiPage(TriggerResponse)
  list(
    @CurrentPrincipal() principal: MachinePrincipal,
    @Param('applicationId', UuidParam) applicationId: string,
    @Query() query: ListQueryDto,
  ) {
    return this.triggers.list(principal, applicationId, query);
  }

  @Get('triggers/:id')
  @ApiOperation({ summary: 'Get a cron trigger' })
  @ApiOkResponse({ type: TriggerResponse })
  get(@CurrentPrincipal() principal: MachinePrincipal, @Param('id', UuidParam) id: string) {
    return this.triggers.get(principal, id);
  }

  @Patch('triggers/:id')
  @ApiOperation({
    summary: 'Change a trigger; a new expression or zone, or re-enabling, recomputes nextRunAt from now',
  })
  @ApiOkResponse({ type: TriggerResponse })
  @ApiErrors('VALIDATION_FAILED', 'INVALID_CRON', 'INVALID_TIMEZONE', 'CONFLICT')
  update(
    @CurrentPrincipal() principal: MachinePrincipal,
    @Param('id', UuidParam) id: string,
    @Body() body: UpdateTriggerDto,
  ) {
    return this.triggers.update(principal, id, body);
  }

  @Delete('triggers/:id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Delete a trigger and its run history' })
  @ApiNoContentResponse()
  async remove(@CurrentPrincipal() principal: MachinePrincipal, @Param('id', UuidParam) id: string): Promise<void> {
    await this.triggers.remove(principal, id);
  }

  @Post('triggers/:id/run')
  @HttpCode(202)
  @ApiOperation({ summary: 'Fire now (scheduledFor = this second), leaving the schedule as it is' })
  @ApiAcceptedResponse({ type: TriggerRunResponse })
  runNow(@CurrentPrincipal() principal: MachinePrincipal, @Param('id', UuidParam) id: string) {
    return this.triggers.runNow(principal, id);
  }

  @Get('triggers/:id/runs')
  @ApiOperation({ summary: "A trigger's runs, newest first, each with its deliveries" })
  @ApiPage(TriggerRunResponse)
  runs(
    @CurrentPrincipal() principal: MachinePrincipal,
    @Param('id', UuidParam) id: string,
    @Query() query: ListQueryDto,
  ) {
    return this.triggers.runs(principal, id, query);
  }
}
