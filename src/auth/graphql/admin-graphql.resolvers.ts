import { plainToInstance } from 'class-transformer';
import { validate } from 'class-validator';
import { DomainException } from '../../common/errors.js';
import { isUuid } from '../../common/uuid-param.pipe.js';
import { flattenValidationErrors } from '../../common/validation.js';
import {
  CreateMachineUserDto,
  type CreatedMachineUserResponse,
  type MachineUserResponse,
} from '../machine-users.dto.js';
import type { MachineUsersService } from '../machine-users.service.js';
import { GENERATE_TOKEN } from './admin-graphql.schema.js';

interface MachineUserCredentialsInput {
  name: string;
  username: string;
  hashedKey: string;
  enabled?: boolean | null;
}

/** The root value handed to graphql-js: one function per root field, called with its arguments. */
export interface AdminGraphqlRoot {
  machineUser(args: { id: string }): Promise<MachineUserResponse | null>;
  createMachineUserWithCredentials(args: {
    tenantId: string;
    input: MachineUserCredentialsInput;
  }): Promise<CreatedMachineUserResponse>;
}

export function createAdminResolvers(machineUsers: MachineUsersService): AdminGraphqlRoot {
  return {
    async machineUser({ id }) {
      if (!isUuid(id)) return null;
      try {
        return await machineUsers.get(id.toLowerCase());
      } catch (error) {
        if (error instanceof DomainException && error.code === 'NOT_FOUND') return null;
        throw error;
      }
    },

    async createMachineUserWithCredentials({ tenantId, input }) {
      const dto = await validMachineUserInput(input);
      if (!isUuid(tenantId)) throw DomainException.notFound('Tenant');
      return machineUsers.create(tenantId.toLowerCase(), dto);
    },
  };
}

/**
 * The REST DTO's rules, so a name or username valid in one API is valid in the other, plus
 * `hashedKey`. The seed lets a client pass a pre-hashed key of its own; we never accept
 * client-chosen credentials (a chosen key may be weak or reused elsewhere, and only a token
 * of 256 server-drawn random bits makes the plain SHA-256 in token-codec safe). So the
 * sentinel is the only accepted value, and anything else is refused rather than silently
 * replaced, so a client that believes it set its own key learns at once that it did not.
 */
async function validMachineUserInput(input: MachineUserCredentialsInput): Promise<CreateMachineUserDto> {
  const dto = plainToInstance(CreateMachineUserDto, {
    name: input.name,
    username: input.username,
    ...(input.enabled != null && { enabled: input.enabled }),
  });
  const errors = flattenValidationErrors(await validate(dto, { whitelist: true, forbidNonWhitelisted: true }), 'input');
  if (input.hashedKey !== GENERATE_TOKEN) {
    errors.push({
      field: 'input.hashedKey',
      message: `only "${GENERATE_TOKEN}" is supported: the server generates every token`,
    });
  }
  if (errors.length > 0) throw DomainException.validation(errors);
  return dto;
}
