import { Body, Controller, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { ApiAcceptedResponse, ApiBearerAuth, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { CurrentPrincipal, MachineUser } from '../auth/auth.decorators.js';
import { type MachinePrincipal, ROLE_BACKEND, ROLE_OPERATOR } from '../auth/principal.js';
import { ApiErrors, ApiPage } from '../common/openapi.js';
import { UuidParam } from '../common/uuid-param.pipe.js';
import {
  DeliveryDetailResponse,
  DeliveryResponse,
  ListDeliveriesQuery,
  RecoverDto,
  RecoverResponse,
} from './deliveries.dto.js';
import { DeliveryApiService } from './delivery-api.service.js';

@ApiTags('deliveries')
@ApiBearerAuth()
@ApiErrors('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND')
@MachineUser(ROLE_BACKEND, ROLE_OPERATOR)
@Controller('api')
export class DeliveriesController {
  constructor(private readonly deliveries: DeliveryApiService) {}

  @Get('deliveries')
  @ApiOperation({ summary: 'List deliveries, newest first' })
  @ApiPage(DeliveryResponse)
  @ApiErrors('VALIDATION_FAILED')
  list(@CurrentPrincipal() principal: MachinePrincipal, @Query() query: ListDeliveriesQuery) {
    return this.deliveries.list(principal, query);
  }

  @Get('deliveries/:id')
  @ApiOperation({ summary: 'A delivery with its attempt log' })
  @ApiOkResponse({ type: DeliveryDetailResponse })
  get(@CurrentPrincipal() principal: MachinePrincipal, @Param('id', UuidParam) id: string) {
    return this.deliveries.get(principal, id);
  }

  @Post('deliveries/:id/replay')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Send a DEAD, PARKED or SUCCEEDED delivery again with a fresh attempt budget and the same webhook-id',
  })
  @ApiAcceptedResponse({ type: DeliveryResponse })
  @ApiErrors('CONFLICT')
  replay(@CurrentPrincipal() principal: MachinePrincipal, @Param('id', UuidParam) id: string) {
    return this.deliveries.replay(principal, id);
  }

  @Post('machine/backends/:id/recover')
  @HttpCode(202)
  @ApiOperation({ summary: 'Replay every DEAD and PARKED delivery of a backend created since a time (at most 10,000)' })
  @ApiAcceptedResponse({ type: RecoverResponse })
  @ApiErrors('VALIDATION_FAILED', 'CONFLICT')
  recover(
    @CurrentPrincipal() principal: MachinePrincipal,
    @Param('id', UuidParam) id: string,
    @Body() body: RecoverDto,
  ): Promise<RecoverResponse> {
    return this.deliveries.recover(principal, id, body.since);
  }
}
