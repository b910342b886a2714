import { Body, Controller, HttpCode, Post, Res } from '@nestjs/common';
import { ApiBadRequestResponse, ApiBearerAuth, ApiBody, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { ApiErrors } from '../../common/openapi.js';
import { AdminOnly } from '../auth.decorators.js';
import { GENERATE_TOKEN } from './admin-graphql.schema.js';
import { AdminGraphqlService } from './admin-graphql.service.js';
import { GraphqlRequestDto, GraphqlResponse } from './graphql-request.dto.js';

const SEED_MUTATION = `mutation {
  createMachineUserWithCredentials(
    tenantId: "0b5f7c1e-8d7a-4f8e-9a51-3c2d1e0f9a8b"
    input: {
      name: "Payment Processing Service"
      username: "payment-service"
      hashedKey: "${GENERATE_TOKEN}"
      enabled: true
    }
  ) {
    generatedToken
    machineUser { id username }
  }
}`;

@ApiTags('admin')
@ApiBearerAuth()
@ApiErrors('UNAUTHENTICATED', 'FORBIDDEN')
@AdminOnly()
@Controller()
export class AdminGraphqlController {
  constructor(private readonly graphql: AdminGraphqlService) {}

  @Post('graphql')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Admin GraphQL: createMachineUserWithCredentials',
    description:
      `GraphQL-over-HTTP. \`hashedKey\` must be \`"${GENERATE_TOKEN}"\`: the server generates the token ` +
      'and returns it once as `generatedToken`. Execution errors answer 200 with `{data, errors}` and a ' +
      '§3 code in `errors[].extensions.code` (NOT_FOUND, CONFLICT, VALIDATION_FAILED); a document that ' +
      'does not parse or validate answers 400 with `{errors}`.',
  })
  @ApiBody({
    type: GraphqlRequestDto,
    examples: {
      seed: { summary: "The seed's mutation", value: { query: SEED_MUTATION } },
      variables: {
        summary: 'With variables',
        value: {
          query:
            'mutation Create($tenantId: ID!, $input: MachineUserCredentialsInput!) { ' +
            'createMachineUserWithCredentials(tenantId: $tenantId, input: $input) { generatedToken tokenId } }',
          variables: {
            tenantId: '0b5f7c1e-8d7a-4f8e-9a51-3c2d1e0f9a8b',
            input: { name: 'Payment Processing Service', username: 'payment-service', hashedKey: GENERATE_TOKEN },
          },
          operationName: 'Create',
        },
      },
    },
  })
  @ApiOkResponse({ type: GraphqlResponse, description: '`{data, errors?}` once execution started' })
  @ApiBadRequestResponse({ type: GraphqlResponse, description: '`{errors}`: syntax, validation or variables' })
  async execute(@Body() body: GraphqlRequestDto, @Res({ passthrough: true }) reply: FastifyReply) {
    const { status, body: answer } = await this.graphql.execute(body);
    void reply.status(status);
    return answer;
  }
}
