import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import { DomainException } from '../common/errors.js';
import { type ListQueryDto, type Page, paginate } from '../common/pagination.js';
import { TenancyService } from '../tenancy/tenancy.service.js';
import { MachineUser, MachineUserToken } from './auth.entities.js';
import type {
  CreatedMachineUserResponse,
  CreateMachineUserDto,
  IssuedTokenResponse,
  MachineUserResponse,
  TokenResponse,
  UpdateMachineUserDto,
} from './machine-users.dto.js';
import { ROLE_BACKEND } from './principal.js';
import { displayPrefix, generateToken, hashToken } from './token-codec.js';
import { TokenVerifier } from './token-verifier.js';

/** Machine users and their bearer tokens (admin side). */
@Injectable()
export class MachineUsersService {
  constructor(
    private readonly em: EntityManager,
    private readonly verifier: TokenVerifier,
    private readonly tenancy: TenancyService,
  ) {}

  async create(tenantId: string, input: CreateMachineUserDto): Promise<CreatedMachineUserResponse> {
    await this.tenancy.getTenant(tenantId);
    return this.em.transactional(async (em) => {
      const machineUser = em.create(MachineUser, {
        id: randomUUID(),
        tenantId,
        name: input.name,
        username: input.username,
        enabled: input.enabled ?? true,
        roles: input.roles ?? [ROLE_BACKEND],
      });
      em.persist(machineUser);
      const { token, generatedToken } = this.newToken(em, machineUser);
      await em.flush();
      return { generatedToken, tokenId: token.id, machineUser: presentMachineUser(machineUser) };
    });
  }

  async list(tenantId: string, query: ListQueryDto): Promise<Page<MachineUserResponse>> {
    await this.tenancy.getTenant(tenantId);
    return paginate(this.em, MachineUser, { tenantId }, query, presentMachineUser);
  }

  async get(id: string): Promise<MachineUserResponse> {
    return presentMachineUser(await this.find(id));
  }

  async update(id: string, input: UpdateMachineUserDto): Promise<MachineUserResponse> {
    const machineUser = await this.find(id);
    this.em.assign(machineUser, {
      ...(input.name !== undefined && { name: input.name }),
      ...(input.enabled !== undefined && { enabled: input.enabled }),
      ...(input.roles !== undefined && { roles: input.roles }),
    });
    await this.em.flush();
    this.verifier.forgetMachineUser(id);
    return presentMachineUser(machineUser);
  }

  async issueToken(machineUserId: string): Promise<IssuedTokenResponse> {
    const machineUser = await this.find(machineUserId);
    const { token, generatedToken } = this.newToken(this.em, machineUser);
    await this.em.flush();
    return { generatedToken, tokenId: token.id, prefix: token.prefix, createdAt: token.createdAt.toISOString() };
  }

  async listTokens(machineUserId: string, query: ListQueryDto): Promise<Page<TokenResponse>> {
    await this.find(machineUserId);
    return paginate(this.em, MachineUserToken, { machineUserId }, query, presentToken);
  }

  async revokeToken(machineUserId: string, tokenId: string): Promise<void> {
    const token = await this.em.findOne(MachineUserToken, { id: tokenId, machineUserId });
    if (!token) throw DomainException.notFound('Token');
    token.revokedAt ??= new Date();
    await this.em.flush();
    this.verifier.forgetToken(tokenId);
  }

  private newToken(em: EntityManager, machineUser: MachineUser) {
    const generatedToken = generateToken();
    const token = em.create(MachineUserToken, {
      id: randomUUID(),
      tenantId: machineUser.tenantId,
      machineUserId: machineUser.id,
      tokenHash: hashToken(generatedToken),
      prefix: displayPrefix(generatedToken),
    });
    em.persist(token);
    return { token, generatedToken };
  }

  private async find(id: string): Promise<MachineUser> {
    const machineUser = await this.em.findOne(MachineUser, { id });
    if (!machineUser) throw DomainException.notFound('Machine user');
    return machineUser;
  }
}

export function presentMachineUser(machineUser: MachineUser): MachineUserResponse {
  return {
    id: machineUser.id,
    tenantId: machineUser.tenantId,
    name: machineUser.name,
    username: machineUser.username,
    enabled: machineUser.enabled,
    roles: [...machineUser.roles],
    createdAt: machineUser.createdAt.toISOString(),
  };
}

function presentToken(token: MachineUserToken): TokenResponse {
  return {
    id: token.id,
    prefix: token.prefix,
    createdAt: token.createdAt.toISOString(),
    lastUsedAt: token.lastUsedAt?.toISOString() ?? null,
    revokedAt: token.revokedAt?.toISOString() ?? null,
  };
}
