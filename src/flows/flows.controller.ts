import { Body, Controller, Get, HttpCode, Param, Post, Put, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { CurrentPrincipal, MachineUser } from '../auth/auth.decorators.js';
import { type MachinePrincipal, ROLE_OPERATOR } from '../auth/principal.js';
import { RequestBaseUrl } from '../common/base-url.js';
import { ApiErrors, ApiPage } from '../common/openapi.js';
import { ListQueryDto } from '../common/pagination.js';
import { UuidParam } from '../common/uuid-param.pipe.js';
import { ExecutionResponse, FlowResponse, ListExecutionsQuery, SaveFlowDto, StartExecutionDto } from './flows.dto.js';
import { FlowsService } from './flows.service.js';

/** What saving a definition (POST or PUT) can refuse. */
const ApiDefinitionErrors = () =>
  ApiErrors(
    'VALIDATION_FAILED',
    'INVALID_EXPRESSION',
    'INVALID_SCHEMA',
    'INVALID_DURATION',
    'INVALID_URL',
    'CALLBACK_URL_FORBIDDEN',
    'CONFLICT',
  );

@ApiTags('flows')
@ApiBearerAuth()
@ApiErrors('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND')
@MachineUser(ROLE_OPERATOR)
@Controller('api')
export class FlowsController {
  constructor(private readonly flows: FlowsService) {}

  @Post('applications/:applicationId/flows')
  @ApiOperation({ summary: 'Create a flow; callback steps get a triggerId and an activationUrl' })
  @ApiCreatedResponse({ type: FlowResponse })
  @ApiDefinitionErrors()
  create(
    @CurrentPrincipal() principal: MachinePrincipal,
    @Param('applicationId', UuidParam) applicationId: string,
    @Body() body: SaveFlowDto,
    @RequestBaseUrl() baseUrl: string,
  ) {
    return this.flows.create(principal, applicationId, body, baseUrl);
  }

  @Get('applications/:applicationId/flows')
  @ApiOperation({ summary: "List an application's flows (current versions)" })
  @ApiPage(FlowResponse)
  list(
    @CurrentPrincipal() principal: MachinePrincipal,
    @Param('applicationId', UuidParam) applicationId: string,
    @Query() query: ListQueryDto,
  ) {
    return this.flows.list(principal, applicationId, query);
  }

  @Get('flows/:id')
  @ApiOperation({ summary: 'Get a flow (its current version)' })
  @ApiOkResponse({ type: FlowResponse })
  get(@CurrentPrincipal() principal: MachinePrincipal, @Param('id', UuidParam) id: string) {
    return this.flows.get(principal, id);
  }

  @Put('flows/:id')
  @ApiOperation({
    summary: 'Save a new version; started executions keep theirs, unchanged callback steps keep their URLs',
  })
  @ApiOkResponse({ type: FlowResponse })
  @ApiDefinitionErrors()
  replace(
    @CurrentPrincipal() principal: MachinePrincipal,
    @Param('id', UuidParam) id: string,
    @Body() body: SaveFlowDto,
    @RequestBaseUrl() baseUrl: string,
  ) {
    return this.flows.replace(principal, id, body, baseUrl);
  }

  @Post('flows/:id/executions')
  @ApiOperation({ summary: 'Start an execution by API; trigger.data is `input` (default {})' })
  @ApiCreatedResponse({ type: ExecutionResponse })
  start(
    @CurrentPrincipal() principal: MachinePrincipal,
    @Param('id', UuidParam) id: string,
    @Body() body: StartExecutionDto,
    @RequestBaseUrl() baseUrl: string,
  ) {
    return this.flows.start(principal, id, body.input, baseUrl);
  }

  @Get('flows/:id/executions')
  @ApiOperation({ summary: "A flow's executions, newest first, optionally by status" })
  @ApiPage(ExecutionResponse)
  executions(
    @CurrentPrincipal() principal: MachinePrincipal,
    @Param('id', UuidParam) id: string,
    @Query() query: ListExecutionsQuery,
  ) {
    return this.flows.listExecutions(principal, id, query);
  }

  @Get('executions/:id')
  @ApiOperation({ summary: 'An execution: status, current step, context and history' })
  @ApiOkResponse({ type: ExecutionResponse })
  execution(@CurrentPrincipal() principal: MachinePrincipal, @Param('id', UuidParam) id: string) {
    return this.flows.getExecution(principal, id);
  }

  @Post('executions/:id/cancel')
  @HttpCode(200)
  @ApiOperation({ summary: 'Cancel a running or waiting execution' })
  @ApiOkResponse({ type: ExecutionResponse })
  @ApiErrors('EXECUTION_FINISHED')
  cancel(@CurrentPrincipal() principal: MachinePrincipal, @Param('id', UuidParam) id: string) {
    return this.flows.cancel(principal, id);
  }
}
